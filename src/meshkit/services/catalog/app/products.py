"""The catalog's use cases.

Optimistic concurrency: every product has a ``version``. An update or delete
may name the version it expects; when the stored one differs the answer is
:class:`~meshkit.basis.errors.PreconditionFailed` (HTTP 412, reason
``version_mismatch``, details ``expected`` and ``current``). Without an expected
version an update still never loses a concurrent change: it is applied to the
latest state, retried when another writer got in between.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal

from meshkit.basis.errors import Conflict, NotFound, PreconditionFailed, Unprocessable
from meshkit.services.catalog.app.cursor import decode_cursor, encode_cursor
from meshkit.services.catalog.app.ids import new_id
from meshkit.services.catalog.app.ports import Page, ProductFilter, ProductRepository
from meshkit.services.catalog.domain import Draft, Product, ProductChanges

DEFAULT_PAGE = 50
MAX_PAGE = 200
_UPDATE_ATTEMPTS = 5


def _utcnow() -> datetime:
    return datetime.now(UTC)


def version_mismatch(expected: int, current: int) -> PreconditionFailed:
    """The error for a stale version: says which version is current, so the caller can re-read."""
    return PreconditionFailed(
        f"the product is at version {current}, not {expected}: fetch it again and reapply your change",
        reason="version_mismatch",
        details={"expected": expected, "current": current},
    )


def duplicate_sku(sku: str) -> Conflict:
    """The error for a sku another product already has (repositories raise it)."""
    return Conflict(
        f"sku {sku!r} is already used by another product: choose another sku",
        reason="duplicate_sku",
        details={"loc": "sku", "value": sku},
    )


def not_found(product_id: str) -> NotFound:
    return NotFound(f"no product with id {product_id!r}", reason="product_not_found", details={"id": product_id})


class Products:
    """Create, read, list, update and delete products."""

    def __init__(
        self,
        repository: ProductRepository,
        *,
        clock: Callable[[], datetime] = _utcnow,
        ids: Callable[[], str] = new_id,
        max_page: int = MAX_PAGE,
    ) -> None:
        self._repo = repository
        self._clock = clock
        self._ids = ids
        self.max_page = max_page

    async def create(self, draft: Draft) -> Product:
        """A new product (version 1). 422 on invalid fields, 409 ``duplicate_sku`` if the sku is taken."""
        product = Product.create(draft, id=self._ids(), now=self._clock())
        await self._repo.add(product)
        return product

    async def get(self, product_id: str) -> Product:
        """The product, or 404."""
        product = await self._repo.get(product_id)
        if product is None:
            raise not_found(product_id)
        return product

    async def list(self, where: ProductFilter, *, cursor: str | None = None, limit: int = DEFAULT_PAGE) -> Page:
        """One page of products matching ``where``, in creation order."""
        if not 1 <= limit <= self.max_page:
            raise Unprocessable(
                f"limit must be between 1 and {self.max_page}",
                details=[{"loc": "limit", "message": f"must be between 1 and {self.max_page}", "type": "range"}],
            )
        _check_filter(where)
        fingerprint = where.fingerprint()
        after = decode_cursor(cursor, fingerprint) if cursor else None
        # One extra row tells whether there is a next page without a COUNT.
        rows = await self._repo.list(where, after=after, limit=limit + 1)
        items = rows[:limit]
        next_cursor = encode_cursor(items[-1].id, fingerprint) if len(rows) > limit else None
        return Page(items=items, next_cursor=next_cursor)

    async def update(
        self, product_id: str, changes: ProductChanges, *, expected_version: int | None = None
    ) -> Product:
        """Apply ``changes``; 404, 412 ``version_mismatch``, 422 or 409 ``duplicate_sku``."""
        for _ in range(_UPDATE_ATTEMPTS):
            current = await self.get(product_id)
            if expected_version is not None and current.version != expected_version:
                raise version_mismatch(expected_version, current.version)
            updated = current.change(changes, now=self._clock())
            if updated is current:
                return current
            if await self._repo.replace(updated, expected_version=current.version):
                return updated
            # Someone else wrote between our read and our write. With a precondition
            # that is the caller's conflict; without one, apply to the newer state.
            if expected_version is not None:
                latest = await self.get(product_id)
                raise version_mismatch(expected_version, latest.version)
        raise Conflict(
            "the product is being changed by others right now; retry",
            reason="contended",
            details={"id": product_id},
        )

    async def delete(self, product_id: str, *, expected_version: int | None = None) -> None:
        """Delete the product; 404 if there is none, 412 if it is not at ``expected_version``."""
        if await self._repo.remove(product_id, expected_version=expected_version):
            return
        if expected_version is None:
            raise not_found(product_id)
        current = await self.get(product_id)  # 404 if it is gone
        raise version_mismatch(expected_version, current.version)


def _check_filter(where: ProductFilter) -> None:
    problems = []
    for name in ("min_price", "max_price"):
        value: Decimal | None = getattr(where, name)
        if value is not None and (not value.is_finite() or value < 0):
            problems.append({"loc": name, "message": "must be a number that is not negative", "type": "negative"})
        elif value is not None and value.normalize().as_tuple().exponent < -4:  # type: ignore[operator]
            problems.append({"loc": name, "message": "may have at most 4 decimal places", "type": "decimal_places"})
    if not problems and where.min_price is not None and where.max_price is not None and where.min_price > where.max_price:
        problems.append({"loc": "min_price", "message": "must not be greater than max_price", "type": "range"})
    if problems:
        raise Unprocessable("invalid filter: " + ", ".join(p["loc"] for p in problems), details=problems)
