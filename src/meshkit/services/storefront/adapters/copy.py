"""The storefront's copy of the catalog's products and how a catalog event becomes a row of it."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Column, Integer, MetaData, String, Table, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from meshkit.basis.bus import Envelope
from meshkit.basis.storage import transaction
from meshkit.services.catalog_sdk.events import ProductEvent

MIGRATIONS = "meshkit.services.storefront.adapters.migrations"

metadata = MetaData()
product_copy = Table(
    "storefront_products",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("description", String, nullable=False),
    Column("sku", String(64), nullable=False),
    Column("amount", String(40), nullable=False),
    Column("currency", String(3), nullable=False),
    Column("version", Integer, nullable=False),
)


def product_row(event: Envelope) -> dict[str, Any] | None:
    """The copy's row for a catalog product event (``None`` for anything else)."""
    data = event.data
    if not isinstance(data, ProductEvent):
        return None
    p = data.product
    return {
        "id": p.id, "name": p.name, "description": p.description, "sku": p.sku,
        "amount": format(p.price.amount, "f"), "currency": p.price.currency, "version": data.version,
    }


def _json(row: Any) -> dict[str, Any]:
    return {
        "id": row["id"], "name": row["name"], "description": row["description"], "sku": row["sku"],
        "price": {"amount": row["amount"], "currency": row["currency"]}, "version": row["version"],
    }


class ProductCopy:
    """Reads of the copy (the projection writes it)."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self.sessions = sessions

    async def get(self, product_id: str) -> dict[str, Any] | None:
        async with transaction(self.sessions, write=False) as session:
            row = (await session.execute(select(product_copy).where(product_copy.c.id == product_id))).mappings().first()
        return _json(row) if row is not None else None

    async def list(self, *, after: str | None, limit: int) -> list[dict[str, Any]]:
        query = select(product_copy).order_by(product_copy.c.id).limit(limit)
        if after:
            query = query.where(product_copy.c.id > after)
        async with transaction(self.sessions, write=False) as session:
            rows = (await session.execute(query)).mappings().all()
        return [_json(r) for r in rows]
