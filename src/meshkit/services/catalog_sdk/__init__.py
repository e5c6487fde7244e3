"""The catalog's contract for other services: models, a typed client, a fake, the OpenAPI document.

::

    from meshkit.services.catalog_sdk import CatalogClient, ProductIn, Price

    catalog = CatalogClient(service.client)        # the runtime's ServiceClient
    page = await catalog.list_products(currency="EUR", limit=20)

In unit tests use :class:`FakeCatalog` (same methods, in memory).

Versions: every product has a ``version``; ``update_product`` / ``delete_product``
take ``version=`` and fail with ``PreconditionFailed`` (HTTP 412, reason
``version_mismatch``) when the product has moved on.

``openapi.json`` in this package is generated from the service's routes and
these models. After changing either, regenerate it (a test fails while the
committed file is stale)::

    python -m meshkit.services.catalog.openapi > src/meshkit/services/catalog_sdk/openapi.json

or ``python -m meshkit.services.catalog.openapi --write``. This package imports
nothing of the service itself (an import-linter contract checks that).
"""

from importlib import resources

from meshkit.services.catalog_sdk.client import SERVICE, CatalogClient
from meshkit.services.catalog_sdk.fake import FakeCatalog
from meshkit.services.catalog_sdk.models import (
    PAGE_MAX,
    Price,
    Product,
    ProductIn,
    ProductPage,
    ProductPatch,
    ProductQuery,
)


def openapi() -> str:
    """The catalog's OpenAPI document (JSON text), as committed in this package."""
    return resources.files(__name__).joinpath("openapi.json").read_text(encoding="utf-8")


__all__ = [
    "PAGE_MAX",
    "SERVICE",
    "CatalogClient",
    "FakeCatalog",
    "Price",
    "Product",
    "ProductIn",
    "ProductPage",
    "ProductPatch",
    "ProductQuery",
    "openapi",
]
