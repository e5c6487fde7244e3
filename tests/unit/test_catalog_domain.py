"""Catalog domain: money and product rules (pure, no I/O)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from meshkit.basis.errors import Unprocessable
from meshkit.services.catalog.domain import (
    CURRENCIES,
    MAX_AMOUNT,
    NAME_MAX,
    Draft,
    InvalidProduct,
    Money,
    Product,
    ProductChanges,
)

T0 = datetime(2025, 1, 1, tzinfo=UTC)


def _draft(**kw) -> Draft:
    base = {"name": "Mug", "sku": "MUG-1", "price_amount": "9.50", "price_currency": "EUR"}
    return Draft(**{**base, **kw})


def _locs(exc: InvalidProduct) -> dict[str, str]:
    return {d["loc"]: d["type"] for d in exc.details}


@pytest.mark.parametrize(
    ("amount", "currency", "expected"),
    [
        ("19.9", "EUR", Decimal("19.90")),
        ("19.99", "USD", Decimal("19.99")),
        (5, "JPY", Decimal("5")),
        ("1.234", "KWD", Decimal("1.234")),
        ("0", "EUR", Decimal("0.00")),
        ("12.5000", "EUR", Decimal("12.50")),  # trailing zeros are not extra places
        (Decimal("1E+2"), "EUR", Decimal("100.00")),
    ],
)
def test_money_keeps_exact_amount_at_currency_places(amount, currency, expected):
    money = Money.of(amount, currency)
    assert money.amount == expected and str(money.amount) == str(expected)
    assert money.currency == currency


@pytest.mark.parametrize(
    ("amount", "currency", "loc", "kind"),
    [
        ("-0.01", "EUR", "price.amount", "negative"),
        ("19.999", "EUR", "price.amount", "decimal_places"),
        ("1.5", "JPY", "price.amount", "decimal_places"),
        ("abc", "EUR", "price.amount", "decimal"),
        ("NaN", "EUR", "price.amount", "decimal"),
        ("Infinity", "EUR", "price.amount", "decimal"),
        (str(MAX_AMOUNT), "EUR", "price.amount", "too_large"),
        ("1", "XXX", "price.currency", "currency"),
        ("1", "eur", "price.currency", "currency"),
        ("1", "EURO", "price.currency", "currency"),
    ],
)
def test_money_rules(amount, currency, loc, kind):
    with pytest.raises(InvalidProduct) as info:
        Money.of(amount, currency)
    assert _locs(info.value) == {loc: kind}
    assert info.value.status == 422 and isinstance(info.value, Unprocessable)


def test_float_amount_is_refused():
    _, problems = Money.check(19.99, "EUR")  # type: ignore[arg-type]
    assert [p.field for p in problems] == ["price.amount"]


def test_currency_table_has_iso_exponents():
    assert CURRENCIES["EUR"] == 2 and CURRENCIES["JPY"] == 0 and CURRENCIES["BHD"] == 3 and CURRENCIES["CLF"] == 4
    assert all(len(c) == 3 and c.isupper() for c in CURRENCIES)
    assert max(CURRENCIES.values()) <= 4  # prices are stored as integers of 1/10^4


def test_create_product_is_version_one_and_trims():
    p = Product.create(_draft(name="  Mug  ", sku=" MUG-1 "), id="x", now=T0)
    assert (p.name, p.sku, p.version, p.created_at, p.updated_at) == ("Mug", "MUG-1", 1, T0, T0)
    assert p.price == Money(Decimal("9.50"), "EUR")


def test_create_reports_every_problem_at_once():
    with pytest.raises(InvalidProduct) as info:
        Product.create(
            _draft(name=" ", sku="bad sku!", price_amount="-1", price_currency="ZZZ", description="d" * 5001),
            id="x",
            now=T0,
        )
    assert _locs(info.value) == {
        "name": "empty",
        "sku": "pattern",
        "description": "too_long",
        "price.amount": "negative",
        "price.currency": "currency",
    }
    assert "name" in info.value.message and "sku" in info.value.message


def test_name_length_limit():
    Product.create(_draft(name="n" * NAME_MAX), id="x", now=T0)
    with pytest.raises(InvalidProduct) as info:
        Product.create(_draft(name="n" * (NAME_MAX + 1)), id="x", now=T0)
    assert _locs(info.value) == {"name": "too_long"}


def test_change_bumps_version_and_updated_at_only():
    p = Product.create(_draft(), id="x", now=T0)
    later = T0 + timedelta(seconds=5)
    q = p.change(ProductChanges(name="Big mug", price_amount="12"), now=later)
    assert (q.name, q.price.amount, q.version, q.created_at, q.updated_at) == ("Big mug", Decimal("12.00"), 2, T0, later)
    assert (q.sku, q.description, q.price.currency) == (p.sku, p.description, "EUR")


def test_change_that_changes_nothing_is_not_a_new_version():
    p = Product.create(_draft(), id="x", now=T0)
    assert p.change(ProductChanges(name="Mug", price_amount="9.5"), now=T0 + timedelta(1)) is p
    assert p.change(ProductChanges(), now=T0) is p


def test_change_currency_alone_is_checked_against_the_amount():
    p = Product.create(_draft(price_amount="9.50"), id="x", now=T0)
    with pytest.raises(InvalidProduct) as info:
        p.change(ProductChanges(price_currency="JPY"), now=T0)
    assert _locs(info.value) == {"price.amount": "decimal_places"}
    assert p.change(ProductChanges(price_currency="USD"), now=T0).price == Money(Decimal("9.50"), "USD")


def test_invalid_change_leaves_the_product_alone():
    p = Product.create(_draft(), id="x", now=T0)
    with pytest.raises(InvalidProduct):
        p.change(ProductChanges(name="ok", sku="no spaces allowed"), now=T0)
    assert (p.name, p.sku, p.version) == ("Mug", "MUG-1", 1)
