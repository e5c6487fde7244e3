"""An in-memory catalog with :class:`~.client.CatalogClient`'s methods, for other services' unit tests.

It keeps the contract's behaviour that callers depend on — ids, versions,
unique skus (``Conflict`` ``duplicate_sku``), preconditions (``PreconditionFailed``
``version_mismatch``), ``NotFound``, negative prices (``Unprocessable``),
filters and cursor pages — without a server. It does not know which currency
codes exist or their decimal places; the real service does.
"""

from __future__ import annotations

import base64
import itertools
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from meshkit.basis.errors import BadRequest, Conflict, NotFound, PreconditionFailed, Unprocessable
from meshkit.services.catalog_sdk.client import iter_pages
from meshkit.services.catalog_sdk.models import Product, ProductIn, ProductPage, ProductPatch, ProductQuery


class FakeCatalog:
    """Products in a dict. ``calls`` records ``(method, args)`` so a test can assert what was asked."""

    def __init__(self, products: list[ProductIn] | None = None) -> None:
        self._rows: dict[str, Product] = {}
        self._ids = itertools.count(1)
        self.calls: list[tuple[str, tuple[Any, ...]]] = []
        for p in products or []:
            self._add(p)

    async def create_product(self, product: ProductIn) -> Product:
        self.calls.append(("create_product", (product,)))
        return self._add(product).model_copy(deep=True)

    async def get_product(self, product_id: str) -> Product:
        self.calls.append(("get_product", (product_id,)))
        return self._get(product_id).model_copy(deep=True)

    async def list_products(self, *, limit: int = 50, cursor: str | None = None, **filters: Any) -> ProductPage:
        self.calls.append(("list_products", (limit, cursor, filters)))
        query = ProductQuery(limit=limit, cursor=cursor, **filters)
        after = _decode(cursor) if cursor else ""
        rows = [p for pid, p in sorted(self._rows.items()) if pid > after and _matches(p, query)]
        page = rows[:limit]
        next_cursor = _encode(page[-1].id) if len(rows) > limit else None
        return ProductPage(items=[p.model_copy(deep=True) for p in page], next_cursor=next_cursor)

    async def iter_products(self, *, page_size: int = 100, **filters: Any) -> AsyncIterator[Product]:
        async for item in iter_pages(self.list_products, page_size, filters):
            yield item

    async def update_product(self, product_id: str, patch: ProductPatch, *, version: int | None = None) -> Product:
        self.calls.append(("update_product", (product_id, patch, version)))
        current = self._get(product_id)
        expected = version if version is not None else patch.version
        if expected is not None and expected != current.version:
            raise _mismatch(expected, current.version)
        changes = patch.model_dump(exclude_unset=True, exclude={"version"})
        if "price" in changes:
            _check_price(patch.price.amount)  # type: ignore[union-attr]
        if "sku" in changes and changes["sku"] != current.sku:
            self._check_sku(changes["sku"])
        merged = current.model_copy(update={k: getattr(patch, k) for k in changes})
        if merged == current:
            return current.model_copy(deep=True)
        updated = merged.model_copy(update={"version": current.version + 1, "updated_at": datetime.now(UTC)})
        self._rows[product_id] = updated
        return updated.model_copy(deep=True)

    async def delete_product(self, product_id: str, *, version: int | None = None) -> None:
        self.calls.append(("delete_product", (product_id, version)))
        current = self._get(product_id)
        if version is not None and version != current.version:
            raise _mismatch(version, current.version)
        del self._rows[product_id]

    # -- helpers ----------------------------------------------------------------------

    def _add(self, product: ProductIn) -> Product:
        _check_price(product.price.amount)
        self._check_sku(product.sku)
        now = datetime.now(UTC)
        pid = str(uuid.UUID(int=next(self._ids)))
        row = Product(id=pid, version=1, created_at=now, updated_at=now, **product.model_dump())
        self._rows[pid] = row
        return row

    def _get(self, product_id: str) -> Product:
        row = self._rows.get(product_id)
        if row is None:
            raise NotFound(f"no product with id {product_id!r}", reason="product_not_found", details={"id": product_id})
        return row

    def _check_sku(self, sku: str) -> None:
        if any(p.sku == sku for p in self._rows.values()):
            raise Conflict(
                f"sku {sku!r} is already used by another product: choose another sku",
                reason="duplicate_sku",
                details={"loc": "sku", "value": sku},
            )


def _check_price(amount: Decimal) -> None:
    if amount < 0:
        raise Unprocessable(
            "invalid product: fix price.amount",
            details=[{"loc": "price.amount", "message": "must not be negative", "type": "negative"}],
        )


def _mismatch(expected: int, current: int) -> PreconditionFailed:
    return PreconditionFailed(
        f"the product is at version {current}, not {expected}: fetch it again and reapply your change",
        reason="version_mismatch",
        details={"expected": expected, "current": current},
    )


def _matches(p: Product, q: ProductQuery) -> bool:
    return (
        (q.sku is None or p.sku == q.sku)
        and (q.currency is None or p.price.currency == q.currency)
        and (q.min_price is None or p.price.amount >= q.min_price)
        and (q.max_price is None or p.price.amount <= q.max_price)
        and (q.q is None or q.q.lower() in p.name.lower())
    )


def _encode(after: str) -> str:
    return base64.b64encode(f"fake:{after}".encode(), altchars=b"-_").decode()


def _decode(cursor: str) -> str:
    try:
        text = base64.b64decode(cursor.encode(), altchars=b"-_", validate=True).decode()
    except ValueError:
        text = ""
    if not text.startswith("fake:"):
        raise BadRequest("the cursor is not valid", reason="bad_cursor", details={"loc": "cursor"})
    return text.removeprefix("fake:")
