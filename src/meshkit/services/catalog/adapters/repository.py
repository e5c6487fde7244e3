"""Products in SQL (SQLite or PostgreSQL), through SQLAlchemy Core.

Each method is one transaction. Updates and deletes are conditional on the
version (``UPDATE ... WHERE id = :id AND version = :expected``), so of two
writers that read the same version exactly one succeeds, on both engines.
Given an outbox, every successful write also stages its event
(``catalog.product.created|updated|deleted``) in the same transaction.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from sqlalchemy import Select, delete, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from meshkit.basis.errors import Conflict
from meshkit.basis.outbox import Outbox
from meshkit.basis.storage import transaction
from meshkit.services.catalog.adapters.events import stage
from meshkit.services.catalog.adapters.tables import MAX_E4, from_e4, products, to_e4
from meshkit.services.catalog.app.ports import ProductFilter
from meshkit.services.catalog.app.products import duplicate_sku
from meshkit.services.catalog.domain import CURRENCIES, Money, Product


class SqlProductRepository:
    """:class:`~meshkit.services.catalog.app.ports.ProductRepository` over a SQLAlchemy session factory."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], *, outbox: Outbox | None = None) -> None:
        self._sessions = sessions
        self._outbox = outbox

    async def add(self, product: Product) -> None:
        try:
            async with transaction(self._sessions) as session:
                await session.execute(insert(products).values(**_row(product)))
                await stage(self._outbox, session, "created", product)
        except Conflict as exc:
            raise _duplicate(exc, product.sku) from exc

    async def get(self, product_id: str) -> Product | None:
        async with transaction(self._sessions, write=False) as session:
            row = (await session.execute(select(products).where(products.c.id == product_id))).mappings().first()
        return _product(row) if row is not None else None

    async def list(self, where: ProductFilter, *, after: str | None, limit: int) -> list[Product]:
        query = _filtered(select(products), where)
        if after is not None:
            query = query.where(products.c.id > after)
        query = query.order_by(products.c.id).limit(limit)
        async with transaction(self._sessions, write=False) as session:
            rows = (await session.execute(query)).mappings().all()
        return [_product(r) for r in rows]

    async def replace(self, product: Product, *, expected_version: int) -> bool:
        values = _row(product)
        del values["id"], values["created_at"]
        statement = (
            update(products)
            .where(products.c.id == product.id, products.c.version == expected_version)
            .values(**values)
        )
        try:
            async with transaction(self._sessions) as session:
                result = await session.execute(statement)
                if result.rowcount == 1:  # type: ignore[attr-defined]
                    await stage(self._outbox, session, "updated", product)
        except Conflict as exc:
            raise _duplicate(exc, product.sku) from exc
        return result.rowcount == 1  # type: ignore[attr-defined]

    async def remove(self, product_id: str, *, expected_version: int | None = None) -> bool:
        statement = delete(products).where(products.c.id == product_id)
        if expected_version is not None:
            statement = statement.where(products.c.version == expected_version)
        async with transaction(self._sessions) as session:
            # The deleted event carries the product's last state: read it under the same lock.
            row = None
            if self._outbox is not None:
                row = (await session.execute(select(products).where(products.c.id == product_id))).mappings().first()
            result = await session.execute(statement)
            if result.rowcount == 1 and row is not None:  # type: ignore[attr-defined]
                await stage(self._outbox, session, "deleted", _product(row))
        return result.rowcount == 1  # type: ignore[attr-defined]


def _filtered(query: Select[Any], where: ProductFilter) -> Select[Any]:
    c = products.c
    if where.sku is not None:
        query = query.where(c.sku == where.sku)
    if where.currency is not None:
        query = query.where(c.currency == where.currency)
    if where.min_price is not None:
        query = query.where(c.price_e4 >= _bound(where.min_price))
    if where.max_price is not None:
        query = query.where(c.price_e4 <= _bound(where.max_price))
    if where.q:
        # ILIKE on PostgreSQL, lower() LIKE lower() on SQLite; % and _ in q are literal.
        query = query.where(c.name.icontains(where.q, autoescape=True))
    return query


def _bound(amount: Decimal) -> int:
    # Bounds beyond any storable price would overflow BIGINT; clamp them.
    return min(to_e4(amount), MAX_E4)


def _row(p: Product) -> dict[str, Any]:
    return {
        "id": p.id,
        "sku": p.sku,
        "name": p.name,
        "description": p.description,
        "price_e4": to_e4(p.price.amount),
        "currency": p.price.currency,
        "version": p.version,
        "created_at": p.created_at,
        "updated_at": p.updated_at,
    }


def _product(row: Any) -> Product:
    currency = row["currency"]
    return Product(
        id=row["id"],
        name=row["name"],
        description=row["description"],
        price=Money(from_e4(row["price_e4"], CURRENCIES.get(currency, 4)), currency),
        sku=row["sku"],
        version=row["version"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


def _duplicate(exc: Conflict, sku: str) -> Conflict:
    if "sku" in (exc.details or {}).get("fields", []):
        return duplicate_sku(sku)
    return exc

