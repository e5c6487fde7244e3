"""Storefront adapters: the product copy table, how catalog events map onto it, the migrations."""

from meshkit.services.storefront.adapters.copy import MIGRATIONS, ProductCopy, product_copy, product_row

__all__ = ["MIGRATIONS", "ProductCopy", "product_copy", "product_row"]
