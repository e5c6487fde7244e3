"""catalog_sdk against the running service: CatalogClient over a real RegistryView + ServiceClient.

The same scenario also runs against :class:`FakeCatalog`, so the fake other
services test with behaves like the real thing.
"""

from __future__ import annotations

import uuid
from decimal import Decimal

import pytest

from meshkit.basis.client.service_client import ServiceClient
from meshkit.basis.errors import BadRequest, Conflict, NotFound, PreconditionFailed, Unprocessable
from meshkit.basis.registry import open_registry
from meshkit.basis.registry.view import RegistryView
from meshkit.basis.testing import running
from meshkit.services.catalog.main import build
from meshkit.services.catalog.settings import CatalogSettings
from meshkit.services.catalog_sdk import CatalogClient, FakeCatalog, Price, ProductIn, ProductPatch


@pytest.fixture(scope="module")
async def catalog_service(tmp_path_factory):
    data = tmp_path_factory.mktemp("catalog-sdk")
    registry_url = f"memory://catalog-sdk-{uuid.uuid4().hex[:8]}"
    settings = CatalogSettings(
        port=0, registry_url=registry_url, data_dir=data, log_level="warning", access_log=False
    )
    async with running(build(settings)) as svc:
        yield svc, registry_url


@pytest.fixture
async def real_catalog(catalog_service):
    """A CatalogClient as another service would have it: its own registry view and service client."""
    _, registry_url = catalog_service
    registry = await open_registry(registry_url)
    view = await RegistryView(registry).start()
    await view.wait_for("catalog", 1, timeout=5)
    client = ServiceClient(view, caller="orders", timeout=5)
    try:
        yield CatalogClient(client)
    finally:
        await client.close()
        await view.close()
        await registry.close()


@pytest.fixture(params=["service", "fake"])
def catalog(request):
    if request.param == "fake":
        return FakeCatalog()
    return request.getfixturevalue("real_catalog")


def new(name: str = "Kettle", amount: str = "25.00", currency: str = "EUR", sku: str | None = None) -> ProductIn:
    return ProductIn(name=name, sku=sku or f"K-{uuid.uuid4().hex[:10]}", price=Price(amount=amount, currency=currency))


async def test_create_get_update_delete(catalog):
    created = await catalog.create_product(new(amount="25"))
    assert created.version == 1 and created.price.amount == Decimal("25")
    assert await catalog.get_product(created.id) == created

    updated = await catalog.update_product(created.id, ProductPatch(name="Steel kettle"), version=1)
    assert (updated.name, updated.version, updated.sku) == ("Steel kettle", 2, created.sku)
    # The body's version works as the precondition too.
    updated = await catalog.update_product(created.id, ProductPatch(description="1.7 l", version=2))
    assert updated.version == 3

    with pytest.raises(PreconditionFailed) as stale:
        await catalog.update_product(created.id, ProductPatch(name="late"), version=1)
    assert stale.value.reason == "version_mismatch" and stale.value.details == {"expected": 1, "current": 3}
    with pytest.raises(PreconditionFailed):
        await catalog.delete_product(created.id, version=2)

    await catalog.delete_product(created.id, version=3)
    with pytest.raises(NotFound) as gone:
        await catalog.get_product(created.id)
    assert gone.value.reason == "product_not_found"


async def test_errors_surface_as_meshkit_errors(catalog):
    p = await catalog.create_product(new())
    with pytest.raises(Conflict) as dup:
        await catalog.create_product(new(sku=p.sku))
    assert dup.value.reason == "duplicate_sku"
    with pytest.raises(Unprocessable) as bad:
        await catalog.create_product(new(amount="-1"))
    assert bad.value.details[0]["loc"] == "price.amount"
    with pytest.raises(NotFound):
        await catalog.update_product(str(uuid.uuid4()), ProductPatch(name="x"))
    with pytest.raises(BadRequest):
        await catalog.list_products(cursor="not-a-cursor")


async def test_list_and_iterate_with_filters(catalog):
    tag = uuid.uuid4().hex[:8]
    made = [await catalog.create_product(new(name=f"Pot {tag} {i}", amount=f"{i}.00")) for i in range(1, 6)]
    page = await catalog.list_products(q=f"pot {tag}", min_price="2", limit=2)
    assert [p.id for p in page.items] == [made[1].id, made[2].id] and page.next_cursor
    rest = await catalog.list_products(q=f"pot {tag}", min_price="2", limit=2, cursor=page.next_cursor)
    assert [p.id for p in rest.items] == [made[3].id, made[4].id]
    every = [p.id async for p in catalog.iter_products(page_size=2, q=f"pot {tag}", max_price=Decimal("4"))]
    assert every == [p.id for p in made[:4]]


async def test_client_through_the_service_own_client(catalog_service):
    # The runtime's service.client is the same ServiceClient type; the SDK works on it unchanged.
    svc, _ = catalog_service
    catalog = CatalogClient(svc.client)
    await svc.view.wait_for("catalog", 1, timeout=5)
    p = await catalog.create_product(new(currency="JPY", amount="1500"))
    assert (await catalog.get_product(p.id)).price.amount == Decimal("1500")
