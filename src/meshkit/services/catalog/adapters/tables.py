"""The catalog's tables (the schema itself is created by the migrations in ``migrations/``).

Prices are stored exactly as an integer number of 1/10⁴ units (``price_e4``):
SQLite has no exact decimal type, and one scale for every currency keeps
``min_price``/``max_price`` filters a plain integer comparison.
"""

from __future__ import annotations

from decimal import Decimal

from sqlalchemy import (
    BigInteger,
    Column,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
)

from meshkit.basis.storage.types import UtcDateTime

#: The package holding the catalog's Alembic migrations.
MIGRATIONS = "meshkit.services.catalog.adapters.migrations"

PRICE_SCALE = 4
_SCALE = Decimal(10) ** PRICE_SCALE
#: Largest storable ``price_e4`` (a BIGINT); filters clamp their bounds to it.
MAX_E4 = 2**63 - 1

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_name)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "pk": "pk_%(table_name)s",
    }
)


products = Table(
    "catalog_products",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("sku", String(64), nullable=False, unique=True),
    Column("name", String(200), nullable=False),
    Column("description", Text, nullable=False, server_default=""),
    Column("price_e4", BigInteger, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("version", Integer, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    Index("ix_catalog_products_currency_id", "currency", "id"),
    Index("ix_catalog_products_price_e4", "price_e4"),
)


def to_e4(amount: Decimal) -> int:
    """An amount as an integer of 1/10⁴ units (exact for prices; filter bounds round down)."""
    return int((amount * _SCALE).to_integral_value(rounding="ROUND_FLOOR"))


def from_e4(value: int, places: int) -> Decimal:
    """Back from 1/10⁴ units to an amount with the currency's ``places``."""
    return (Decimal(value) / _SCALE).quantize(Decimal(1).scaleb(-places))
