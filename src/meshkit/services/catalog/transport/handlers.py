"""HTTP handlers for ``/products``: decode, call a use case, encode. No SQL here.

Statuses: 201 created (``Location``, ``ETag``), 200, 204 deleted, 304 not
modified (``If-None-Match``), 400 malformed JSON / cursor / If-Match list,
404 unknown product, 409 duplicate sku, **412 stale version** (If-Match header
or ``version`` field — the one status for every optimistic-concurrency
failure, reason ``version_mismatch``, details ``expected``/``current``),
422 invalid fields (one entry per field: ``loc``, ``message``, ``type``).
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from meshkit.basis.web import json_response, parse_body, parse_query
from meshkit.services.catalog.app import Products
from meshkit.services.catalog.transport.codec import changes, draft, product_filter, product_json
from meshkit.services.catalog.transport.preconditions import etag, expected_version, not_modified
from meshkit.services.catalog_sdk.models import ProductIn, ProductPatch, ProductQuery


class ProductHandlers:
    """The ``/products`` endpoints over the :class:`~meshkit.services.catalog.app.Products` use cases."""

    def __init__(self, products: Products) -> None:
        self.products = products

    async def create(self, request: Request) -> Response:
        body = await parse_body(request, ProductIn)
        product = await self.products.create(draft(body))
        headers = {"location": f"/products/{product.id}", "etag": etag(product.version)}
        return json_response(product_json(product), status=201, headers=headers)

    async def get(self, request: Request) -> Response:
        product = await self.products.get(request.path_params["id"])
        tag = etag(product.version)
        if not_modified(request.headers.get("if-none-match"), product.version):
            return Response(status_code=304, headers={"etag": tag})
        return json_response(product_json(product), headers={"etag": tag})

    async def list(self, request: Request) -> Response:
        query = parse_query(request, ProductQuery)
        page = await self.products.list(product_filter(query), cursor=query.cursor, limit=query.limit)
        return json_response({"items": [product_json(p) for p in page.items], "next_cursor": page.next_cursor})

    async def update(self, request: Request) -> Response:
        body = await parse_body(request, ProductPatch)
        expected = expected_version(request.headers.get("if-match"), body.version)
        product = await self.products.update(request.path_params["id"], changes(body), expected_version=expected)
        return json_response(product_json(product), headers={"etag": etag(product.version)})

    async def delete(self, request: Request) -> Response:
        expected = expected_version(request.headers.get("if-match"))
        await self.products.delete(request.path_params["id"], expected_version=expected)
        return Response(status_code=204)
