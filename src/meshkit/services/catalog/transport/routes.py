"""The catalog's HTTP surface, declared once: the Starlette routes and the OpenAPI document both come from here."""

from __future__ import annotations

from dataclasses import dataclass, field

from pydantic import BaseModel
from starlette.routing import Route

from meshkit.services.catalog.app import Products
from meshkit.services.catalog.transport.handlers import ProductHandlers
from meshkit.services.catalog_sdk.models import Product, ProductIn, ProductPage, ProductPatch, ProductQuery

#: Version of the HTTP API (the OpenAPI ``info.version``); bump on contract changes.
API_VERSION = "1.0.0"


@dataclass(frozen=True)
class Endpoint:
    """One operation: where, which handler, and what it takes and answers (for OpenAPI)."""

    method: str
    path: str
    handler: str
    summary: str
    status: int
    body: type[BaseModel] | None = None
    query: type[BaseModel] | None = None
    response: type[BaseModel] | None = None
    #: Error statuses it can answer (beyond 5xx), each with what it means here.
    errors: dict[int, str] = field(default_factory=dict)
    #: Request headers it understands, name -> description.
    headers: dict[str, str] = field(default_factory=dict)
    #: Response headers of the success answer, name -> description.
    response_headers: dict[str, str] = field(default_factory=dict)


_ETAG = {"ETag": 'the product\'s version in quotes, e.g. "3"'}

ENDPOINTS: tuple[Endpoint, ...] = (
    Endpoint(
        "POST", "/products", "create", "Create a product", 201,
        body=ProductIn, response=Product,
        errors={400: "the body is not JSON", 409: "duplicate_sku: the sku is taken",
                422: "invalid fields (negative price, unknown currency, too long...)"},
        response_headers={"Location": "/products/{id} of the new product", **_ETAG},
    ),
    Endpoint(
        "GET", "/products", "list", "List products, oldest first, a page at a time", 200,
        query=ProductQuery, response=ProductPage,
        errors={400: "bad_cursor: the cursor was altered or used with other filters",
                422: "invalid query parameters (limit out of range, bad currency...)"},
    ),
    Endpoint(
        "GET", "/products/{id}", "get", "Get a product", 200,
        response=Product,
        errors={304: "If-None-Match matched: the client's copy is current", 404: "no such product"},
        headers={"If-None-Match": "ETag(s) the client has; 304 when one is current"},
        response_headers=_ETAG,
    ),
    Endpoint(
        "PATCH", "/products/{id}", "update", "Change some fields of a product", 200,
        body=ProductPatch, response=Product,
        errors={400: "the body is not JSON, or If-Match and version disagree", 404: "no such product",
                409: "duplicate_sku: the new sku is taken",
                412: "version_mismatch: the product is not at the version in If-Match / version",
                422: "invalid fields"},
        headers={"If-Match": 'the version to change, e.g. "3" (or send "version" in the body)'},
        response_headers=_ETAG,
    ),
    Endpoint(
        "DELETE", "/products/{id}", "delete", "Delete a product", 204,
        errors={404: "no such product", 412: "version_mismatch: the product is not at the version in If-Match"},
        headers={"If-Match": 'delete only at this version, e.g. "3"'},
    ),
)


def routes(products: Products) -> list[Route]:
    """Starlette routes for the ``/products`` endpoints, bound to ``products``."""
    handlers = ProductHandlers(products)
    return [
        Route(e.path, getattr(handlers, e.handler), methods=[e.method], name=f"products.{e.handler}")
        for e in ENDPOINTS
    ]
