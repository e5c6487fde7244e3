"""The catalog's wire contract: what goes in and comes out of ``/products``.

Amounts travel as decimal strings (``"19.99"``), never JSON numbers, so no
precision is lost on the way; currencies are ISO 4217 codes in capitals. The
limits here mirror the service's own rules, so clients can check early; the
service checks again and is the authority (it also knows which codes exist
and how many decimal places each currency has).
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, WithJsonSchema, model_validator

NAME_MAX = 200
DESCRIPTION_MAX = 5000
SKU_MAX = 64
SKU_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]*$"
CURRENCY_PATTERN = r"^[A-Z]{3}$"
#: Most products a page may hold (``limit``).
PAGE_MAX = 200


def _no_float(value: Any) -> Any:
    # A JSON number arrives as a float that may already have lost the amount.
    if isinstance(value, bool) or isinstance(value, float):
        raise ValueError('send the amount as a string, e.g. "19.99", so it stays exact')
    return value


Amount = Annotated[
    Decimal,
    BeforeValidator(_no_float),
    WithJsonSchema({"type": "string", "pattern": r"^\d+(\.\d+)?$", "examples": ["19.99"]}),
]
Currency = Annotated[str, Field(pattern=CURRENCY_PATTERN, examples=["EUR"], description="ISO 4217 code")]


class Price(BaseModel):
    """An exact amount (decimal string) in a currency."""

    model_config = ConfigDict(extra="forbid")

    amount: Amount
    currency: Currency


class ProductIn(BaseModel):
    """A new product (``POST /products``)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=NAME_MAX)
    description: str = Field(default="", max_length=DESCRIPTION_MAX)
    price: Price
    sku: str = Field(min_length=1, max_length=SKU_MAX, pattern=SKU_PATTERN, description="unique stock-keeping unit")


class ProductPatch(BaseModel):
    """A partial update (``PATCH /products/{id}``): only the fields given change.

    ``version`` is an alternative to the ``If-Match`` header: the update is made
    only if the product is still at that version (else 412).
    """

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, min_length=1, max_length=NAME_MAX)
    description: str | None = Field(default=None, max_length=DESCRIPTION_MAX)
    price: Price | None = None
    sku: str | None = Field(default=None, min_length=1, max_length=SKU_MAX, pattern=SKU_PATTERN)
    version: int | None = Field(default=None, ge=1)

    @model_validator(mode="after")
    def _no_nulls(self) -> ProductPatch:
        # null is not "unchanged" and not "erase": leaving the field out is unchanged.
        nulls = sorted(f for f in self.model_fields_set if getattr(self, f) is None)
        if nulls:
            raise ValueError(f"{', '.join(nulls)} cannot be null: leave a field out to keep its value")
        return self


class Product(BaseModel):
    """A product as the catalog returns it."""

    id: str
    name: str
    description: str
    price: Price
    sku: str
    version: int = Field(description="grows by one with every change; send it back in If-Match")
    created_at: datetime
    updated_at: datetime

    @property
    def etag(self) -> str:
        """The entity tag of this version, as in the ``ETag`` header."""
        return f'"{self.version}"'


class ProductPage(BaseModel):
    """One page of ``GET /products``; pass ``next_cursor`` back as ``cursor`` for the next (``None``: last page)."""

    items: list[Product]
    next_cursor: str | None = None


class ProductQuery(BaseModel):
    """Query parameters of ``GET /products``."""

    model_config = ConfigDict(extra="forbid")

    limit: int = Field(default=50, ge=1, le=PAGE_MAX)
    cursor: str | None = Field(default=None, max_length=512, description="next_cursor of the previous page")
    sku: str | None = Field(default=None, max_length=SKU_MAX)
    currency: str | None = Field(default=None, pattern=CURRENCY_PATTERN)
    min_price: Decimal | None = Field(default=None, ge=0, description="inclusive")
    max_price: Decimal | None = Field(default=None, ge=0, description="inclusive")
    q: str | None = Field(default=None, min_length=1, max_length=NAME_MAX, description="case-insensitive part of the name")

    def params(self) -> dict[str, str]:
        """The query as URL parameters (only the ones set)."""
        return {k: str(v) for k, v in self.model_dump(exclude_none=True).items()}
