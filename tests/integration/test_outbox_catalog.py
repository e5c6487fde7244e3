"""catalog publishes its product changes through its outbox; the storefront keeps a copy from them."""

from __future__ import annotations

import asyncio
import uuid

import httpx
import pytest

from meshkit.basis.bus import Bus, Envelope
from meshkit.basis.testing import running
from meshkit.services.catalog.main import build as build_catalog
from meshkit.services.catalog.settings import CatalogSettings
from meshkit.services.catalog_sdk.events import ProductCreated, ProductDeleted, ProductUpdated
from meshkit.services.storefront.main import build as build_storefront
from meshkit.services.storefront.settings import StorefrontSettings


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path):
    if request.param == "postgresql":
        return request.getfixturevalue("postgres_url")
    return None


async def eventually(fn, timeout: float = 15.0):
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        result = await fn()
        if result:
            return result
        if loop.time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.05)


async def test_catalog_events_feed_the_storefront_copy(nats_server, tmp_path, database_url):
    if database_url is not None:
        # Both services in one PostgreSQL database: their tables and version tables never overlap.
        cat_db = store_db = database_url
    else:
        cat_db, store_db = (f"sqlite+aiosqlite:///{tmp_path / n}.db" for n in ("catalog", "storefront"))
    registry = f"memory://cqrs-{uuid.uuid4().hex[:8]}"
    common = {"port": 0, "registry_url": registry, "nats_url": nats_server, "data_dir": tmp_path,
              "log_level": "warning", "access_log": False}
    catalog = build_catalog(CatalogSettings(database_url=cat_db, **common))
    storefront = build_storefront(StorefrontSettings(database_url=store_db, **common))
    async with running(catalog) as cat, running(storefront) as shop, \
            httpx.AsyncClient(base_url=cat.url, timeout=30) as c, \
            httpx.AsyncClient(base_url=shop.url, timeout=30) as s:
        made = []
        for i in range(3):
            r = await c.post("/products", json={"name": f"Mug {i}", "sku": f"MUG-{uuid.uuid4().hex[:8]}",
                                                "price": {"amount": "9.50", "currency": "EUR"}})
            assert r.status_code == 201, r.text
            made.append(r.json())
        first, second = made[0]["id"], made[1]["id"]
        r = await c.patch(f"/products/{first}", json={"name": "Big mug", "price": {"amount": "12", "currency": "EUR"}})
        assert r.status_code == 200 and r.json()["version"] == 2
        assert (await c.delete(f"/products/{second}")).status_code == 204

        async def copied():
            r = await s.get(f"/products/{first}")
            return r.status_code == 200 and r.json()["version"] == 2 and r.json()

        got = await eventually(copied)
        assert got["name"] == "Big mug" and got["price"] == {"amount": "12.00", "currency": "EUR"}

        async def gone():
            return (await s.get(f"/products/{second}")).status_code == 404 and (
                await s.get(f"/products/{made[2]['id']}")).status_code == 200

        await eventually(gone)

        # On the CATALOG stream: created x3, updated, deleted — with the product and its version.
        bus = Bus(nats_server, source="probe")
        await bus.connect()
        mine = {p["id"] for p in made}
        events: list[Envelope] = []

        async def collect(env: Envelope):
            if env.data.product.id in mine:
                events.append(env)

        try:
            await bus.replay("catalog.product.>", collect)
        finally:
            await bus.close()
        kinds = [(type(e.data), e.data.product.id, e.data.version) for e in events]
        assert kinds == [
            (ProductCreated, made[0]["id"], 1), (ProductCreated, made[1]["id"], 1), (ProductCreated, made[2]["id"], 1),
            (ProductUpdated, first, 2), (ProductDeleted, second, 1),
        ]
        assert all(e.source == "catalog" and e.traceparent for e in events)

        # Rebuild the copy from the stream: same result.
        projection = shop.state["projections"][0]
        await projection.rebuild()

        async def rebuilt():
            return await projection.caught_up() and (await s.get(f"/products/{first}")).json().get("version") == 2

        await eventually(rebuilt)
        assert (await s.get(f"/products/{second}")).status_code == 404
