"""catalog_sdk: the wire models, the fake, and the committed OpenAPI document."""

from __future__ import annotations

from decimal import Decimal

import orjson
import pytest
from pydantic import ValidationError

from meshkit.basis.errors import BadRequest, Conflict, NotFound, PreconditionFailed, Unprocessable
from meshkit.services.catalog import domain, openapi
from meshkit.services.catalog.app import products as use_cases
from meshkit.services.catalog_sdk import FakeCatalog, Price, ProductIn, ProductPatch, models
from meshkit.services.catalog_sdk import openapi as committed_openapi


def mug(sku: str = "MUG-1", amount: str = "9.50", currency: str = "EUR", name: str = "Mug") -> ProductIn:
    return ProductIn(name=name, sku=sku, price=Price(amount=amount, currency=currency))


def test_committed_openapi_matches_the_service():
    """Fails when the routes or models changed and openapi.json was not regenerated.

    Fix: python -m meshkit.services.catalog.openapi > src/meshkit/services/catalog_sdk/openapi.json
    """
    fresh = openapi.render().decode()
    assert committed_openapi() == fresh, (
        "catalog_sdk/openapi.json is stale: run "
        "`python -m meshkit.services.catalog.openapi > src/meshkit/services/catalog_sdk/openapi.json`"
    )


def test_openapi_documents_every_operation_and_status():
    doc = orjson.loads(committed_openapi())
    ops = {(path, method) for path, item in doc["paths"].items() for method in item}
    assert ops == {("/products", "post"), ("/products", "get"), ("/products/{id}", "get"),
                   ("/products/{id}", "patch"), ("/products/{id}", "delete")}
    patch = doc["paths"]["/products/{id}"]["patch"]
    assert {"200", "400", "404", "409", "412", "422"} <= set(patch["responses"])
    assert any(p["name"] == "If-Match" and p["in"] == "header" for p in patch["parameters"])
    price = doc["components"]["schemas"]["Price"]["properties"]["amount"]
    assert price["type"] == "string"  # amounts are decimal strings on the wire


def test_sdk_limits_agree_with_the_domain():
    assert models.NAME_MAX == domain.NAME_MAX
    assert models.DESCRIPTION_MAX == domain.DESCRIPTION_MAX
    assert models.SKU_MAX == domain.SKU_MAX
    assert models.SKU_PATTERN == domain.SKU_PATTERN
    assert models.PAGE_MAX == use_cases.MAX_PAGE


def test_amount_must_be_a_string_or_integer_not_a_float():
    ok = ProductIn.model_validate_json(b'{"name":"a","sku":"A","price":{"amount":"0.10","currency":"EUR"}}')
    assert ok.price.amount == Decimal("0.10")
    with pytest.raises(ValidationError, match="as a string"):
        ProductIn.model_validate_json(b'{"name":"a","sku":"A","price":{"amount":0.1,"currency":"EUR"}}')
    assert mug().model_dump(mode="json")["price"] == {"amount": "9.50", "currency": "EUR"}


def test_unknown_fields_and_nulls_are_refused():
    with pytest.raises(ValidationError):
        ProductIn.model_validate({"name": "a", "sku": "A", "price": {"amount": "1", "currency": "EUR"}, "prize": 1})
    with pytest.raises(ValidationError, match="cannot be null"):
        ProductPatch.model_validate({"name": None})
    assert ProductPatch.model_validate({"name": "x"}).model_dump(exclude_unset=True) == {"name": "x"}


async def test_fake_catalog_keeps_the_contract():
    fake = FakeCatalog([mug("SEED")])
    a = await fake.create_product(mug("A-1"))
    assert a.version == 1 and (await fake.get_product(a.id)) == a
    with pytest.raises(Conflict) as dup:
        await fake.create_product(mug("A-1"))
    assert dup.value.reason == "duplicate_sku"
    with pytest.raises(Unprocessable):
        await fake.create_product(mug("NEG", amount="-1"))
    b = await fake.update_product(a.id, ProductPatch(name="Big"), version=1)
    assert (b.name, b.version) == ("Big", 2)
    with pytest.raises(PreconditionFailed) as stale:
        await fake.update_product(a.id, ProductPatch(name="Bigger"), version=1)
    assert stale.value.details == {"expected": 1, "current": 2}
    assert (await fake.update_product(a.id, ProductPatch(name="Big"))).version == 2  # no-op keeps the version
    page1 = await fake.list_products(limit=1)
    page2 = await fake.list_products(limit=1, cursor=page1.next_cursor)
    assert [p.sku for p in page1.items + page2.items] == ["SEED", "A-1"] and page2.next_cursor is None
    assert [p.sku async for p in fake.iter_products(page_size=1, q="big")] == ["A-1"]
    with pytest.raises(BadRequest):
        await fake.list_products(cursor="%%%")
    await fake.delete_product(a.id, version=2)
    with pytest.raises(NotFound):
        await fake.get_product(a.id)
    assert [c[0] for c in fake.calls][:2] == ["create_product", "get_product"]
