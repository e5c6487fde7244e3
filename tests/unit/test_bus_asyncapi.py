"""AsyncAPI: the committed documents (catalog, storefront, SSO) do not drift; a bus describes what it publishes and consumes."""

from __future__ import annotations

from typing import ClassVar

import orjson

from meshkit.basis.bus import Bus, Envelope, Event
from meshkit.services.catalog import asyncapi as catalog_asyncapi
from meshkit.services.storefront import asyncapi as storefront_asyncapi
from meshkit.services.storefront_sdk import asyncapi_json as storefront_asyncapi_json
from meshkit.sso import asyncapi as sso_asyncapi
from meshkit.sso_sdk import asyncapi_json as sso_asyncapi_json


class Shipped(Event):
    """An order left the warehouse."""

    type_name: ClassVar[str] = "shipping.order.shipped"
    order_id: str


def test_catalog_asyncapi_json_is_up_to_date():
    committed = catalog_asyncapi.sdk_path().read_bytes()
    assert committed == catalog_asyncapi.render(), (
        "catalog_sdk/asyncapi.json is stale: run `python -m meshkit.services.catalog.asyncapi --write`"
    )


def test_catalog_document_lists_the_three_product_events():
    doc = catalog_asyncapi.document()
    assert doc["asyncapi"] == "3.0.0"
    assert sorted(doc["channels"]) == ["catalog.product.created", "catalog.product.deleted", "catalog.product.updated"]
    assert all(op["action"] == "send" for op in doc["operations"].values())
    payload = doc["components"]["messages"]["ProductUpdated"]["payload"]
    assert payload["properties"]["type"] == {"const": "catalog.product.updated"}
    assert payload["properties"]["data"] == {"$ref": "#/components/schemas/ProductUpdated"}
    assert {"product", "version"} <= set(doc["components"]["schemas"]["ProductUpdated"]["properties"])


def test_storefront_asyncapi_json_is_up_to_date():
    assert storefront_asyncapi_json() == storefront_asyncapi.render(), (
        "storefront_sdk/asyncapi.json is stale: run `python -m meshkit.services.storefront.asyncapi --write`"
    )


def test_storefront_document_consumes_the_catalog_product_events_and_publishes_none():
    doc = storefront_asyncapi.document()
    assert doc["info"]["title"] == "meshkit storefront events"
    assert doc["operations"] == {
        f"consume.catalog.product.{kind}": {
            "action": "receive", "summary": "through subscription catalog.product.>",
            "channel": {"$ref": f"#/channels/catalog.product.{kind}"},
        }
        for kind in ("created", "deleted", "updated")
    }
    # the same message schemas as the catalog's own document: one contract, two views
    assert doc["components"]["schemas"] == catalog_asyncapi.document()["components"]["schemas"]


def test_sso_asyncapi_json_is_up_to_date():
    assert sso_asyncapi_json() == sso_asyncapi.render(), (
        "sso_sdk/asyncapi.json is stale: run `python -m meshkit.sso.asyncapi --write`"
    )


def test_sso_document_publishes_and_follows_token_revocations():
    doc = sso_asyncapi.document()
    assert doc["info"]["title"] == "meshkit sso events"
    assert list(doc["channels"]) == ["sso.token.revoked"]
    assert doc["channels"]["sso.token.revoked"]["description"] == "stream SSO"
    assert doc["operations"]["publish.sso.token.revoked"]["action"] == "send"
    assert doc["operations"]["consume.sso.token.revoked"]["action"] == "receive"  # every instance follows it
    schema = doc["components"]["schemas"]["TokenRevoked"]
    assert schema["required"] == ["jti", "exp"] and schema["properties"]["exp"]["type"] == "number"


def test_bus_document_has_published_and_consumed_events():
    bus = Bus("nats://127.0.0.1:1", source="shipping")
    bus.publishes(Shipped)

    @bus.handler("catalog.product.*", durable="shipping-products")
    async def on_product(event: Envelope):
        return None

    doc = bus.asyncapi("2.0.0")
    orjson.dumps(doc)  # JSON-ready
    ops = doc["operations"]
    assert ops["publish.shipping.order.shipped"]["action"] == "send"
    assert ops["consume.catalog.product.created"]["action"] == "receive"
    assert "catalog.product.created" in doc["channels"] and "shipping.order.shipped" in doc["channels"]
    assert doc["components"]["messages"]["Shipped"]["summary"] == "An order left the warehouse."
    bus.declare_follow("shipping.order.*")  # followers are listed like handlers
    assert bus.asyncapi("2.0.0")["operations"]["consume.shipping.order.shipped"]["action"] == "receive"
