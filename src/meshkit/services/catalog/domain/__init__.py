"""Catalog domain: products and money, and the rules they keep. Pure: no I/O, no clock, no randomness."""

from meshkit.services.catalog.domain.money import CURRENCIES, MAX_AMOUNT, Money
from meshkit.services.catalog.domain.product import Draft, Product, ProductChanges
from meshkit.services.catalog.domain.rules import (
    DESCRIPTION_MAX,
    NAME_MAX,
    SKU_MAX,
    SKU_PATTERN,
    InvalidProduct,
    Problem,
)

__all__ = [
    "CURRENCIES",
    "DESCRIPTION_MAX",
    "MAX_AMOUNT",
    "NAME_MAX",
    "SKU_MAX",
    "SKU_PATTERN",
    "Draft",
    "InvalidProduct",
    "Money",
    "Problem",
    "Product",
    "ProductChanges",
]
