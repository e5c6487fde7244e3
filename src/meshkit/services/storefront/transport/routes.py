"""``GET /products`` and ``GET /products/{id}``: served from the local copy, never from the catalog."""

from __future__ import annotations

from pydantic import BaseModel, Field
from starlette.requests import Request
from starlette.routing import Route

from meshkit.basis.errors import NotFound
from meshkit.basis.web import json_response, parse_query
from meshkit.services.storefront.adapters import ProductCopy

#: The version of the storefront's API and of its AsyncAPI document.
API_VERSION = "1.0.0"


class ListQuery(BaseModel):
    """``limit`` and the ``after`` id of the previous page's last product."""

    limit: int = Field(default=50, ge=1, le=200)
    after: str | None = Field(default=None, max_length=36)


def routes(copy: ProductCopy) -> list[Route]:
    """The storefront's routes over ``copy``."""

    async def list_products(request: Request):
        query = parse_query(request, ListQuery)
        items = await copy.list(after=query.after, limit=query.limit)
        return json_response({"items": items})

    async def get_product(request: Request):
        product_id = request.path_params["id"]
        product = await copy.get(product_id)
        if product is None:
            raise NotFound(f"no product with id {product_id!r} in the storefront (yet)", reason="product_not_found",
                           details={"id": product_id})
        return json_response(product)

    return [
        Route("/products", list_products, methods=["GET"]),
        Route("/products/{id}", get_product, methods=["GET"]),
    ]
