"""Product changes as the catalog's published events (``catalog_sdk.events``), staged in the outbox.

The repository calls :func:`stage` inside the transaction of each successful
write, so the event commits with the change or not at all.
"""

from __future__ import annotations

from meshkit.basis.outbox import Outbox
from meshkit.basis.storage import Transaction
from meshkit.services.catalog.domain import Product
from meshkit.services.catalog_sdk import events
from meshkit.services.catalog_sdk.models import Price
from meshkit.services.catalog_sdk.models import Product as ProductOut

_KINDS = {"created": events.ProductCreated, "updated": events.ProductUpdated, "deleted": events.ProductDeleted}


def to_event(kind: str, p: Product) -> events.ProductEvent:
    """The ``catalog.product.<kind>`` event for product ``p``."""
    product = ProductOut(
        id=p.id, name=p.name, description=p.description,
        price=Price(amount=p.price.amount, currency=p.price.currency),
        sku=p.sku, version=p.version, created_at=p.created_at, updated_at=p.updated_at,
    )
    return _KINDS[kind](product=product, version=p.version)


async def stage(outbox: Outbox | None, session: Transaction, kind: str, p: Product) -> None:
    """Add the event to the outbox in ``session``'s transaction (nothing when there is no outbox)."""
    if outbox is not None:
        await outbox.add(session, to_event(kind, p), aggregate_id=p.id)
