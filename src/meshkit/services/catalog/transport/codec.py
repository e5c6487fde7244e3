"""Between the wire (the SDK's models) and the use cases (domain values)."""

from __future__ import annotations

from typing import Any

from meshkit.services.catalog.app import ProductFilter
from meshkit.services.catalog.domain import Draft, Product, ProductChanges
from meshkit.services.catalog_sdk.models import ProductIn, ProductPatch, ProductQuery


def product_json(p: Product) -> dict[str, Any]:
    """A product in the shape of ``catalog_sdk.Product`` (amount as a plain decimal string)."""
    return {
        "id": p.id,
        "name": p.name,
        "description": p.description,
        "price": {"amount": format(p.price.amount, "f"), "currency": p.price.currency},
        "sku": p.sku,
        "version": p.version,
        "created_at": p.created_at,
        "updated_at": p.updated_at,
    }


def draft(body: ProductIn) -> Draft:
    return Draft(
        name=body.name,
        description=body.description,
        sku=body.sku,
        price_amount=body.price.amount,
        price_currency=body.price.currency,
    )


def changes(body: ProductPatch) -> ProductChanges:
    return ProductChanges(
        name=body.name,
        description=body.description,
        sku=body.sku,
        price_amount=body.price.amount if body.price else None,
        price_currency=body.price.currency if body.price else None,
    )


def product_filter(query: ProductQuery) -> ProductFilter:
    return ProductFilter(
        sku=query.sku,
        currency=query.currency,
        min_price=query.min_price,
        max_price=query.max_price,
        q=query.q,
    )
