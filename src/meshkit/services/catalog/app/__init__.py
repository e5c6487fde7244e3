"""Catalog use cases: create, get, list, update and delete products, over a repository Protocol."""

from meshkit.services.catalog.app.cursor import decode_cursor, encode_cursor
from meshkit.services.catalog.app.ids import new_id
from meshkit.services.catalog.app.ports import Page, ProductFilter, ProductRepository
from meshkit.services.catalog.app.products import Products, duplicate_sku, not_found, version_mismatch

__all__ = [
    "Page",
    "ProductFilter",
    "ProductRepository",
    "Products",
    "decode_cursor",
    "duplicate_sku",
    "encode_cursor",
    "new_id",
    "not_found",
    "version_mismatch",
]
