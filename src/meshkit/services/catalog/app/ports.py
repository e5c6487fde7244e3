"""What the use cases need from the outside: a product repository."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Protocol

from meshkit.services.catalog.domain import Product


@dataclass(frozen=True, slots=True)
class ProductFilter:
    """Which products a listing returns; ``None`` means no constraint.

    ``q`` matches a case-insensitive substring of the name; prices are inclusive bounds.
    """

    sku: str | None = None
    currency: str | None = None
    min_price: Decimal | None = None
    max_price: Decimal | None = None
    q: str | None = None

    def fingerprint(self) -> str:
        """A stable text of the filter, so a cursor can refuse to be reused with other filters."""
        return "|".join("" if v is None else str(v) for v in (self.sku, self.currency, self.min_price, self.max_price, self.q))


@dataclass(frozen=True, slots=True)
class Page:
    """One page of a listing and the cursor of the next one (``None`` on the last page)."""

    items: list[Product]
    next_cursor: str | None


class ProductRepository(Protocol):
    """Product storage. Implementations: SQL (SQLite/PostgreSQL) and in memory.

    Every method is atomic: it lands whole or not at all.
    """

    async def add(self, product: Product) -> None:
        """Store a new product; :class:`~meshkit.basis.errors.Conflict` (reason ``duplicate_sku``) if its sku is taken."""

    async def get(self, product_id: str) -> Product | None:
        """The product, or ``None``."""

    async def list(self, where: ProductFilter, *, after: str | None, limit: int) -> list[Product]:
        """Up to ``limit`` products matching ``where`` with id greater than ``after``, in id order."""

    async def replace(self, product: Product, *, expected_version: int) -> bool:
        """Store ``product`` over the stored one if that is still at ``expected_version``.

        Returns ``False`` (and changes nothing) when the stored version differs or
        the product is gone; raises ``Conflict`` (``duplicate_sku``) if the new sku is taken.
        """

    async def remove(self, product_id: str, *, expected_version: int | None = None) -> bool:
        """Delete the product (only at ``expected_version`` when given); ``False`` if nothing was deleted."""
