"""The events the catalog publishes (stream ``CATALOG``, subjects ``catalog.product.*``).

Each carries the product as it is after the change (for ``deleted``: as it was
when deleted) and its ``version``; a consumer keeping a copy applies an event
only when its version is newer than the one it holds. The event id is unique
per change; redeliveries carry the same id.
"""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from meshkit.basis.bus import Event
from meshkit.services.catalog_sdk.models import Product

STREAM = "CATALOG"
#: Every product event.
PRODUCT_EVENTS = "catalog.product.>"


class ProductEvent(Event):
    """Common shape of the product events."""

    product: Product
    version: int = Field(description="the product's version after the change (for deleted: the last one)")


class ProductCreated(ProductEvent):
    """A product was created (version 1)."""

    type_name: ClassVar[str] = "catalog.product.created"


class ProductUpdated(ProductEvent):
    """A product changed; ``product`` is the new state."""

    type_name: ClassVar[str] = "catalog.product.updated"


class ProductDeleted(ProductEvent):
    """A product was deleted; ``product`` is its last state."""

    type_name: ClassVar[str] = "catalog.product.deleted"


#: All the catalog's event classes, for ``bus.publishes(*EVENTS)`` and the AsyncAPI document.
EVENTS = (ProductCreated, ProductUpdated, ProductDeleted)

__all__ = ["EVENTS", "PRODUCT_EVENTS", "STREAM", "ProductCreated", "ProductDeleted", "ProductEvent", "ProductUpdated"]
