"""The product entity and how it is created and changed."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal

from meshkit.services.catalog.domain.money import Money
from meshkit.services.catalog.domain.rules import (
    Problem,
    check_description,
    check_name,
    check_sku,
    raise_if,
)


@dataclass(frozen=True, slots=True)
class Draft:
    """What a caller gives to create a product (raw values, checked by :meth:`Product.create`)."""

    name: str
    sku: str
    price_amount: Decimal | str | int
    price_currency: str
    description: str = ""


@dataclass(frozen=True, slots=True)
class ProductChanges:
    """A partial update: ``None`` leaves a field as it is. A new price replaces amount and currency."""

    name: str | None = None
    description: str | None = None
    sku: str | None = None
    price_amount: Decimal | str | int | None = None
    price_currency: str | None = None


@dataclass(frozen=True, slots=True)
class Product:
    """A product the shop sells. ``version`` starts at 1 and grows by one with every change."""

    id: str
    name: str
    description: str
    price: Money
    sku: str
    version: int
    created_at: datetime
    updated_at: datetime

    @classmethod
    def create(cls, draft: Draft, *, id: str, now: datetime) -> Product:
        """A new product at version 1, or :class:`~.rules.InvalidProduct` listing every problem."""
        name, sku = draft.name.strip(), draft.sku.strip()
        problems = check_name(name) + check_description(draft.description) + check_sku(sku)
        price, price_problems = Money.check(draft.price_amount, draft.price_currency)
        raise_if(problems + price_problems)
        assert price is not None
        return cls(
            id=id,
            name=name,
            description=draft.description,
            price=price,
            sku=sku,
            version=1,
            created_at=now,
            updated_at=now,
        )

    def change(self, changes: ProductChanges, *, now: datetime) -> Product:
        """This product with ``changes`` applied and the version bumped.

        Returns ``self`` unchanged (same version) when the changes change nothing,
        so a repeated PATCH is not a new version.
        """
        problems: list[Problem] = []
        name = self.name if changes.name is None else changes.name.strip()
        sku = self.sku if changes.sku is None else changes.sku.strip()
        description = self.description if changes.description is None else changes.description
        if changes.name is not None:
            problems += check_name(name)
        if changes.sku is not None:
            problems += check_sku(sku)
        if changes.description is not None:
            problems += check_description(description)
        price = self.price
        if changes.price_amount is not None or changes.price_currency is not None:
            amount = self.price.amount if changes.price_amount is None else changes.price_amount
            currency = self.price.currency if changes.price_currency is None else changes.price_currency
            new_price, price_problems = Money.check(amount, currency)
            problems += price_problems
            price = new_price or price
        raise_if(problems)
        if (name, description, sku, price) == (self.name, self.description, self.sku, self.price):
            return self
        return replace(
            self,
            name=name,
            description=description,
            sku=sku,
            price=price,
            version=self.version + 1,
            updated_at=now,
        )
