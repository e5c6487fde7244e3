"""A typed async client of the catalog, over the platform's service client.

::

    catalog = CatalogClient(service.client)           # a meshkit.basis.client.ServiceClient
    product = await catalog.create_product(ProductIn(name="Mug", sku="MUG-1",
                                                     price=Price(amount="9.50", currency="EUR")))
    product = await catalog.update_product(product.id, ProductPatch(name="Big mug"), version=product.version)

Failures surface as :mod:`meshkit.basis.errors`: ``NotFound`` (404),
``Conflict`` (409, e.g. reason ``duplicate_sku``), ``PreconditionFailed`` (412,
reason ``version_mismatch``, details ``expected``/``current``),
``Unprocessable`` (422, per-field details), and the service client's own
``Unavailable`` / ``GatewayTimeout`` when the catalog cannot be reached.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from decimal import Decimal
from typing import Any
from urllib.parse import quote

from meshkit.services.catalog_sdk.models import Product, ProductIn, ProductPage, ProductPatch, ProductQuery

#: The name the catalog registers under.
SERVICE = "catalog"


class CatalogClient:
    """Calls the catalog service by name (load balanced, retried, deadline-aware)."""

    def __init__(self, service_client: Any, *, service: str = SERVICE, timeout: float | None = None) -> None:
        self._client = service_client
        self._service = service
        self._timeout = timeout

    async def create_product(self, product: ProductIn) -> Product:
        """Create a product; 409 ``duplicate_sku`` if its sku is taken."""
        resp = await self._client.post(
            self._service, "/products", json=product.model_dump(mode="json"), timeout=self._timeout
        )
        return Product.model_validate_json(resp.raise_for_status().body)

    async def get_product(self, product_id: str) -> Product:
        """The product; ``NotFound`` if there is none."""
        resp = await self._client.get(self._service, _path(product_id), timeout=self._timeout)
        return Product.model_validate_json(resp.raise_for_status().body)

    async def list_products(
        self,
        *,
        limit: int = 50,
        cursor: str | None = None,
        sku: str | None = None,
        currency: str | None = None,
        min_price: Decimal | str | None = None,
        max_price: Decimal | str | None = None,
        q: str | None = None,
    ) -> ProductPage:
        """One page of products, oldest first; pass ``page.next_cursor`` as ``cursor`` for the next."""
        query = ProductQuery(
            limit=limit, cursor=cursor, sku=sku, currency=currency, min_price=min_price, max_price=max_price, q=q
        )
        resp = await self._client.get(self._service, "/products", params=query.params(), timeout=self._timeout)
        return ProductPage.model_validate_json(resp.raise_for_status().body)

    async def iter_products(self, *, page_size: int = 100, **filters: Any) -> AsyncIterator[Product]:
        """Every product matching ``filters``, page after page."""
        async for item in iter_pages(self.list_products, page_size, filters):
            yield item

    async def update_product(self, product_id: str, patch: ProductPatch, *, version: int | None = None) -> Product:
        """Change the given fields; with ``version``, only if the product is still at it (else 412)."""
        headers = {"if-match": f'"{version}"'} if version is not None else None
        resp = await self._client.patch(
            self._service,
            _path(product_id),
            json=patch.model_dump(mode="json", exclude_unset=True),
            headers=headers,
            timeout=self._timeout,
        )
        return Product.model_validate_json(resp.raise_for_status().body)

    async def delete_product(self, product_id: str, *, version: int | None = None) -> None:
        """Delete the product; with ``version``, only if it is still at it (else 412)."""
        headers = {"if-match": f'"{version}"'} if version is not None else None
        resp = await self._client.delete(self._service, _path(product_id), headers=headers, timeout=self._timeout)
        resp.raise_for_status()


async def iter_pages(
    list_products: Callable[..., Awaitable[ProductPage]], page_size: int, filters: dict[str, Any]
) -> AsyncIterator[Product]:
    """Every product ``list_products(limit=, cursor=, **filters)`` yields, following the cursor page after page."""
    cursor: str | None = None
    while True:
        page = await list_products(limit=page_size, cursor=cursor, **filters)
        for item in page.items:
            yield item
        if page.next_cursor is None:
            return
        cursor = page.next_cursor


def _path(product_id: str) -> str:
    return "/products/" + quote(product_id, safe="")
