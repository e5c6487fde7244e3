"""Products in memory: the repository fake for unit tests, with the same rules as SQL."""

from __future__ import annotations

from meshkit.services.catalog.app.ports import ProductFilter
from meshkit.services.catalog.app.products import duplicate_sku
from meshkit.services.catalog.domain import Product


class MemoryProductRepository:
    """:class:`~meshkit.services.catalog.app.ports.ProductRepository` in a dict (one process, no I/O)."""

    def __init__(self) -> None:
        self._rows: dict[str, Product] = {}

    async def add(self, product: Product) -> None:
        if any(p.sku == product.sku for p in self._rows.values()):
            raise duplicate_sku(product.sku)
        self._rows[product.id] = product

    async def get(self, product_id: str) -> Product | None:
        return self._rows.get(product_id)

    async def list(self, where: ProductFilter, *, after: str | None, limit: int) -> list[Product]:
        q = where.q.lower() if where.q else None
        matches = [
            p
            for p in self._rows.values()
            if (after is None or p.id > after)
            and (where.sku is None or p.sku == where.sku)
            and (where.currency is None or p.price.currency == where.currency)
            and (where.min_price is None or p.price.amount >= where.min_price)
            and (where.max_price is None or p.price.amount <= where.max_price)
            and (q is None or q in p.name.lower())
        ]
        return sorted(matches, key=lambda p: p.id)[:limit]

    async def replace(self, product: Product, *, expected_version: int) -> bool:
        stored = self._rows.get(product.id)
        if stored is None or stored.version != expected_version:
            return False
        if any(p.sku == product.sku and p.id != product.id for p in self._rows.values()):
            raise duplicate_sku(product.sku)
        self._rows[product.id] = product
        return True

    async def remove(self, product_id: str, *, expected_version: int | None = None) -> bool:
        stored = self._rows.get(product_id)
        if stored is None or (expected_version is not None and stored.version != expected_version):
            return False
        del self._rows[product_id]
        return True
