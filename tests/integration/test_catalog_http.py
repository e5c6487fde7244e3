"""The catalog over HTTP, through the real runtime (``meshkit.basis.testing.running``).

One service per backend (SQLite, PostgreSQL) for the module; every status the
API promises is exercised, with the JSON error shape and field details.
"""

from __future__ import annotations

import uuid

import httpx
import pytest

from meshkit.basis.errors import Unavailable
from meshkit.basis.testing import running
from meshkit.services.catalog.main import build
from meshkit.services.catalog.settings import CatalogSettings
from meshkit.services.catalog_sdk import Product, ProductPage


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def database_url(request, tmp_path_factory):
    if request.param == "postgresql":
        return request.getfixturevalue("postgres_url")
    return f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('catalog-http')}/catalog.db"


def settings_for(database_url: str, data_dir) -> CatalogSettings:
    return CatalogSettings(
        port=0,
        registry_url=f"memory://catalog-http-{uuid.uuid4().hex[:8]}",
        database_url=database_url,
        data_dir=data_dir,
        log_level="warning",
        access_log=False,
    )


@pytest.fixture(scope="module")
async def http(database_url, tmp_path_factory):
    service = build(settings_for(database_url, tmp_path_factory.mktemp("data")))
    async with running(service) as svc, httpx.AsyncClient(base_url=svc.url, timeout=10) as client:
        yield client


def sku() -> str:
    return f"SKU-{uuid.uuid4().hex[:10]}"


def body(**kw):
    base = {"name": "Mug", "sku": sku(), "price": {"amount": "9.50", "currency": "EUR"}}
    return {**base, **kw}


async def create(http, **kw) -> dict:
    r = await http.post("/products", json=body(**kw))
    assert r.status_code == 201, r.text
    return r.json()


def error(r: httpx.Response, status: int, reason: str) -> dict:
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert err["reason"] == reason, err
    assert err["message"]
    return err


def locs(err: dict) -> set[str]:
    return {d["loc"] for d in err["details"]}


async def test_ready_with_database_check(http):
    r = await http.get("/readyz")
    assert r.status_code == 200
    assert r.json()["checks"]["database"]["ok"] is True


async def test_create_201_with_location_and_etag(http):
    r = await http.post("/products", json=body(description="A big one", price={"amount": "12.5", "currency": "USD"}))
    assert r.status_code == 201
    product = Product.model_validate(r.json())  # the wire shape is the SDK's
    assert r.headers["location"] == f"/products/{product.id}"
    assert r.headers["etag"] == '"1"' and product.version == 1
    assert r.json()["price"] == {"amount": "12.50", "currency": "USD"}
    again = await http.get(r.headers["location"])
    assert again.status_code == 200 and again.json() == r.json()


async def test_get_etag_and_if_none_match(http):
    p = await create(http)
    r = await http.get(f"/products/{p['id']}")
    assert r.status_code == 200 and r.headers["etag"] == '"1"'
    for tag in ('"1"', 'W/"1"', '"0", "1"', "*"):
        r = await http.get(f"/products/{p['id']}", headers={"if-none-match": tag})
        assert r.status_code == 304 and r.content == b"" and r.headers["etag"] == '"1"', tag
    r = await http.get(f"/products/{p['id']}", headers={"if-none-match": '"7"'})
    assert r.status_code == 200


async def test_unknown_product_404(http):
    err = error(await http.get(f"/products/{uuid.uuid4()}"), 404, "product_not_found")
    assert "no product" in err["message"]
    error(await http.patch(f"/products/{uuid.uuid4()}", json={"name": "x"}), 404, "product_not_found")
    error(await http.delete(f"/products/{uuid.uuid4()}"), 404, "product_not_found")


async def test_unknown_route_and_method_use_the_error_shape(http):
    error(await http.get("/nope"), 404, "no_route")
    error(await http.put("/products/x", json={}), 405, "method_not_allowed")


async def test_malformed_json_400(http):
    headers = {"content-type": "application/json"}
    error(await http.post("/products", content=b'{"name": ', headers=headers), 400, "invalid_json")
    error(await http.post("/products", content=b"", headers=headers), 400, "invalid_json")
    p = await create(http)
    error(await http.patch(f"/products/{p['id']}", content=b"[", headers=headers), 400, "invalid_json")


async def test_duplicate_sku_409(http):
    p = await create(http)
    err = error(await http.post("/products", json=body(sku=p["sku"], name="Other")), 409, "duplicate_sku")
    assert err["details"]["loc"] == "sku" and p["sku"] in err["message"]
    page = (await http.get("/products", params={"sku": p["sku"]})).json()
    assert [i["id"] for i in page["items"]] == [p["id"]]


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"price": {"amount": "-1.00", "currency": "EUR"}}, {"price.amount"}),
        ({"price": {"amount": "1.00", "currency": "XYZ"}}, {"price.currency"}),
        ({"price": {"amount": "1.00", "currency": "eur"}}, {"price.currency"}),
        ({"price": {"amount": "1.001", "currency": "EUR"}}, {"price.amount"}),
        ({"price": {"amount": 1.5, "currency": "EUR"}}, {"price.amount"}),
        ({"price": {"amount": "lots", "currency": "EUR"}}, {"price.amount"}),
        ({"name": "x" * 201}, {"name"}),
        ({"name": ""}, {"name"}),
        ({"sku": "has space"}, {"sku"}),
        ({"description": "d" * 5001}, {"description"}),
        ({"colour": "red"}, {"colour"}),
        ({"price": None}, {"price"}),
    ],
)
async def test_invalid_product_422_with_field_details(http, overrides, expected):
    err = error(await http.post("/products", json=body(**overrides)), 422, "validation_failed")
    assert locs(err) == expected, err
    assert all(d["message"] and d["type"] for d in err["details"])


async def test_missing_fields_422(http):
    err = error(await http.post("/products", json={"name": "Mug"}), 422, "validation_failed")
    assert locs(err) == {"price", "sku"}


async def test_list_pages_with_filters_and_opaque_cursor(http):
    tag = uuid.uuid4().hex[:8]
    made = [await create(http, name=f"Lamp {tag} {i}", price={"amount": f"{10 + i}.00", "currency": "EUR"})
            for i in range(5)]
    await create(http, name=f"Lamp {tag} usd", price={"amount": "11.00", "currency": "USD"})
    params = {"q": f"lamp {tag.upper()}", "currency": "EUR", "min_price": "11", "max_price": "14.00", "limit": 2}
    seen, cursor = [], None
    for _ in range(5):
        r = await http.get("/products", params={**params, **({"cursor": cursor} if cursor else {})})
        assert r.status_code == 200, r.text
        page = ProductPage.model_validate(r.json())
        seen += [p.id for p in page.items]
        cursor = page.next_cursor
        if cursor is None:
            break
    assert seen == [p["id"] for p in made[1:5]]
    # The cursor is tied to its filters.
    first = (await http.get("/products", params=params)).json()
    err = error(await http.get("/products", params={**params, "currency": "USD", "cursor": first["next_cursor"]}),
                400, "bad_cursor")
    assert "filters" in err["message"]


@pytest.mark.parametrize("cursor", ["garbage", "eyJ2IjoxfQ", "%%%"])
async def test_malformed_cursor_400(http, cursor):
    error(await http.get("/products", params={"cursor": cursor}), 400, "bad_cursor")


@pytest.mark.parametrize(
    ("params", "loc"),
    [
        ({"limit": 0}, "limit"),
        ({"limit": 201}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"currency": "eur"}, "currency"),
        ({"min_price": "cheap"}, "min_price"),
        ({"min_price": "-1"}, "min_price"),
        ({"min_price": "5", "max_price": "1"}, "min_price"),
    ],
)
async def test_bad_list_parameters_422(http, params, loc):
    err = error(await http.get("/products", params=params), 422, "validation_failed")
    assert loc in locs(err)


async def test_patch_with_if_match(http):
    p = await create(http)
    r = await http.patch(f"/products/{p['id']}", json={"name": "Big mug", "price": {"amount": "11", "currency": "EUR"}},
                         headers={"if-match": '"1"'})
    assert r.status_code == 200 and r.headers["etag"] == '"2"'
    got = r.json()
    assert (got["name"], got["price"]["amount"], got["version"], got["sku"]) == ("Big mug", "11.00", 2, p["sku"])
    assert got["created_at"] == p["created_at"] and got["updated_at"] > p["updated_at"]
    # A PATCH that changes nothing is not a new version.
    r = await http.patch(f"/products/{p['id']}", json={"name": "Big mug"})
    assert r.status_code == 200 and r.json()["version"] == 2


async def test_patch_stale_version_412_via_header_or_body(http):
    p = await create(http)
    await http.patch(f"/products/{p['id']}", json={"name": "v2"})
    err = error(await http.patch(f"/products/{p['id']}", json={"name": "x"}, headers={"if-match": '"1"'}),
                412, "version_mismatch")
    assert err["details"] == {"expected": 1, "current": 2}
    err = error(await http.patch(f"/products/{p['id']}", json={"name": "x", "version": 1}), 412, "version_mismatch")
    assert err["details"] == {"expected": 1, "current": 2}
    error(await http.patch(f"/products/{p['id']}", json={"name": "x"}, headers={"if-match": 'W/"2"'}),
          412, "version_mismatch")
    ok = await http.patch(f"/products/{p['id']}", json={"name": "v3", "version": 2})
    assert ok.status_code == 200 and ok.json()["version"] == 3
    star = await http.patch(f"/products/{p['id']}", json={"name": "v4"}, headers={"if-match": "*"})
    assert star.status_code == 200 and star.json()["version"] == 4


async def test_patch_precondition_malformed_400(http):
    p = await create(http)
    error(await http.patch(f"/products/{p['id']}", json={"name": "x", "version": 2}, headers={"if-match": '"1"'}),
          400, "bad_precondition")
    error(await http.patch(f"/products/{p['id']}", json={"name": "x"}, headers={"if-match": '"1", "2"'}),
          400, "bad_precondition")


async def test_failed_patches_write_nothing(http):
    p = await create(http)
    other = await create(http)
    error(await http.patch(f"/products/{p['id']}", json={"name": "Renamed", "sku": other["sku"]}), 409, "duplicate_sku")
    err = error(await http.patch(f"/products/{p['id']}", json={"name": "Renamed", "price": {"amount": "-5", "currency": "EUR"}}),
                422, "validation_failed")
    assert locs(err) == {"price.amount"}
    err = error(await http.patch(f"/products/{p['id']}", json={"name": None}), 422, "validation_failed")
    assert "null" in err["details"][0]["message"]
    error(await http.patch(f"/products/{p['id']}", json={"name": "x" * 201}), 422, "validation_failed")
    now = (await http.get(f"/products/{p['id']}")).json()
    assert now == p


async def test_delete_with_and_without_if_match(http):
    p = await create(http)
    error(await http.delete(f"/products/{p['id']}", headers={"if-match": '"5"'}), 412, "version_mismatch")
    assert (await http.get(f"/products/{p['id']}")).status_code == 200
    r = await http.delete(f"/products/{p['id']}", headers={"if-match": '"1"'})
    assert r.status_code == 204 and r.content == b""
    error(await http.get(f"/products/{p['id']}"), 404, "product_not_found")
    q = await create(http)
    assert (await http.delete(f"/products/{q['id']}")).status_code == 204


async def test_restart_on_the_same_database_migrates_again_and_keeps_data(tmp_path):
    url = f"sqlite+aiosqlite:///{tmp_path}/restart.db"
    async with running(build(settings_for(url, tmp_path))) as svc, httpx.AsyncClient(base_url=svc.url) as c:
        created = (await c.post("/products", json=body())).json()
    async with running(build(settings_for(url, tmp_path))) as svc, httpx.AsyncClient(base_url=svc.url) as c:
        again = await c.get(f"/products/{created['id']}")
        assert again.status_code == 200 and again.json() == created


async def test_start_fails_clearly_when_the_database_is_unreachable(tmp_path):
    service = build(settings_for("postgresql+asyncpg://postgres@127.0.0.1:1/catalog", tmp_path))
    with pytest.raises(Unavailable, match="retry"):
        await service.start()
    assert service.registered is False
