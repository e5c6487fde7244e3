"""The gateway checks API keys at the SSO (``GATEWAY_API_KEYS_SERVICE``), cached, on real engines.

One process, a real NATS: the SSO and an upstream service register in a NATS KV
registry; a gateway built from settings alone (the SSO's JWKS for bearer
tokens, ``api_keys_service="sso"`` with a short cache TTL) routes to both. An
administrator makes API keys with the SSO's admin API (through the gateway);
the upstream echoes the headers it received, so the identity the gateway
injected is read where a service would read it.

An SSO outage is not a bad credential: keys in the cache keep working until
their entry expires, any other key gets 503 ``apikeys_unavailable`` with
``Retry-After`` — never 401, which would tell a partner to drop a good key.
"""

from __future__ import annotations

import asyncio
import base64
import os
import time
import uuid

import httpx
import pytest
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from meshkit.basis.context import IDENTITY_HEADERS
from meshkit.basis.errors import ConfigError
from meshkit.basis.instance import Instance
from meshkit.basis.natsd import free_port
from meshkit.basis.registry import open_registry
from meshkit.basis.registry.registration import Registration
from meshkit.basis.service import Service
from meshkit.basis.settings import ServiceSettings
from meshkit.basis.testing import running
from meshkit.gateway.app import Gateway
from meshkit.gateway.settings import GatewaySettings
from meshkit.sso.main import build as build_sso
from meshkit.sso.settings import SsoSettings

#: The gateway's cache TTL for API-key answers: a revoked key works at most this long.
TTL = 1.0
ADMIN = {"email": "admin@meshkit.local", "password": "admin-password-for-tests"}
ROUTES = """
routes:
  - name: sso-login
    match: {path: /api/sso/login, methods: [POST]}
    upstream: {service: sso}
    rewrite: {path: /v1/login}
  - name: sso-admin
    match: {prefix: /api/sso/admin/}
    upstream: {service: sso}
    rewrite: {prefix: /v1/admin/}
    auth: required
    permissions: ["sso:admin"]
  - name: partner
    match: {prefix: /partner/}
    upstream: {service: partner-api}
    auth: required
    permissions: ["orders:read"]
"""
SPOOF = {"x-meshkit-subject": "usr_admin", "x-meshkit-permissions": "sso:admin,orders:read",
         "x-meshkit-client": "user"}


class Stack:
    """What the tests share: the gateway, an HTTP client to it, the SSO (replaced when restarted)."""

    sso: Service
    sso_settings: SsoSettings
    gw: Gateway
    http: httpx.AsyncClient
    admin: dict[str, str]
    registry_url: str
    upstream_calls: int = 0


async def _until(predicate, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


@pytest.fixture(scope="module")
async def stack(nats_server, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("gw-sso-keys")
    s = Stack()
    s.registry_url = f"{nats_server}?bucket=gw_keys_{uuid.uuid4().hex[:8]}"
    common = dict(registry_url=s.registry_url, nats_url=nats_server, access_log=False)
    s.sso_settings = SsoSettings(data_dir=tmp, argon2_time_cost=1, argon2_memory_kib=256,
                                 key_encryption_key=base64.urlsafe_b64encode(os.urandom(32)).decode(),
                                 admin_password=ADMIN["password"], **common)

    async def echo(request: Request) -> JSONResponse:
        """The upstream: answers with every header it received (all values, to catch duplicates)."""
        s.upstream_calls += 1
        return JSONResponse({"headers": request.headers.items()})

    upstream = Service(ServiceSettings(name="partner-api", data_dir=tmp, **common),
                       routes=[Route("/partner/{rest:path}", echo)])
    routes = tmp / "routes.yaml"
    routes.write_text(ROUTES)
    s.sso = build_sso(s.sso_settings)
    await s.sso.start()
    try:
        async with running(upstream):
            settings = GatewaySettings(
                host="127.0.0.1", port=0, admin_port=0, reload_interval=0, routes_file=routes,
                jwks_url=f"{s.sso.url}/.well-known/jwks.json", issuer=s.sso_settings.issuer,
                audience=s.sso_settings.audience, api_keys_service="sso", api_keys_cache_ttl=TTL, **common)
            s.gw = await Gateway(settings, register=False).start()
            try:
                await s.gw.view.wait_for("sso", 1, 5.0)
                await s.gw.view.wait_for("partner-api", 1, 5.0)
                async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{s.gw.port}", timeout=10) as http:
                    s.http = http
                    r = await http.post("/api/sso/login", json=ADMIN)
                    assert r.status_code == 200, r.text
                    s.admin = {"authorization": f"Bearer {r.json()['access_token']}"}
                    yield s
            finally:
                await s.gw.stop(0.5)
    finally:
        await s.sso.stop()


async def new_key(s: Stack, scopes: list[str], **extra) -> dict:
    """An API key made by an administrator with the SSO's admin API: ``{"id", "key", ...}``."""
    subject = f"partner-{uuid.uuid4().hex[:8]}"
    r = await s.http.post("/api/sso/admin/api-keys", headers=s.admin,
                          json={"name": subject, "subject": subject, "scopes": scopes, **extra})
    assert r.status_code == 201, r.text
    return r.json()


async def call(s: Stack, key: str, headers: dict[str, str] | None = None) -> httpx.Response:
    return await s.http.get("/partner/orders", headers={"x-api-key": key, **(headers or {})})


def seen(r: httpx.Response) -> dict[str, list[str]]:
    """The identity headers the upstream received, every value of each."""
    out: dict[str, list[str]] = {}
    for k, v in r.json()["headers"]:
        if k in IDENTITY_HEADERS:
            out.setdefault(k, []).append(v)
    return out


async def test_an_sso_api_key_reaches_the_upstream_as_its_identity(stack):
    made = await new_key(stack, ["orders:read"], tenant="acme")
    assert made["key"].startswith("mk_")
    r = await call(stack, made["key"], SPOOF)
    assert r.status_code == 200, r.text
    assert seen(r) == {"x-meshkit-subject": [made["subject"]], "x-meshkit-roles": [""],
                       "x-meshkit-permissions": ["orders:read"], "x-meshkit-client": ["apikey"],
                       "x-meshkit-token-id": [made["id"]], "x-meshkit-tenant": ["acme"]}
    # The secret stops at the gateway.
    assert all(k != "x-api-key" and made["key"] not in v for k, v in r.json()["headers"])
    # A key without the route's permission is known (not 401) but not allowed.
    other = await new_key(stack, ["orders:write"])
    r = await call(stack, other["key"])
    assert r.status_code == 403 and "orders:read" in r.json()["error"]["message"]


async def test_an_unknown_key_is_401_with_a_challenge_and_never_reaches_the_upstream(stack):
    before = stack.upstream_calls
    for bad in (f"mk_{uuid.uuid4().hex[:8]}_{uuid.uuid4().hex}", "not-even-a-key", "mk_"):
        r = await call(stack, bad, SPOOF)
        assert r.status_code == 401, (bad, r.text)
        assert r.json()["error"]["reason"] == "invalid_token"
        assert r.headers["www-authenticate"].startswith("Bearer ") and "invalid_token" in r.headers["www-authenticate"]
    assert stack.upstream_calls == before


@pytest.mark.timing
async def test_a_revoked_key_is_refused_within_the_cache_ttl(stack):
    made = await new_key(stack, ["orders:read"])
    assert (await call(stack, made["key"])).status_code == 200  # now in the gateway's cache
    r = await stack.http.delete(f"/api/sso/admin/api-keys/{made['id']}", headers=stack.admin)
    assert r.status_code == 204, r.text
    revoked = time.monotonic()
    while (r := await call(stack, made["key"])).status_code == 200:
        assert time.monotonic() - revoked < TTL + 0.5, "the gateway still accepts a revoked key after its TTL"
        await asyncio.sleep(0.02)
    assert r.status_code == 401 and "www-authenticate" in r.headers, r.text


@pytest.mark.timing
async def test_an_sso_outage_serves_cached_keys_until_the_ttl_and_503s_the_others(stack):
    s = stack
    cached, fresh = await new_key(s, ["orders:read"]), await new_key(s, ["orders:read"])
    sent = time.monotonic()
    assert (await call(s, cached["key"])).status_code == 200
    answered = time.monotonic()
    port = s.sso.port
    await s.sso.stop()  # deregisters: the gateway's view drops it
    await _until(lambda: not s.gw.view.instances("sso"))
    # Still cached: served without the SSO (the entry was stored after `sent`, so it lives past sent + TTL).
    assert time.monotonic() < sent + TTL - 0.05, f"stopping the SSO took longer than the {TTL}s TTL; raise TTL"
    r = await call(s, cached["key"])
    assert r.status_code == 200 and seen(r)["x-meshkit-subject"] == [cached["subject"]], r.text
    # Not cached: the gateway cannot tell good from bad, so it says "retry", not "bad key".
    r = await call(s, fresh["key"])
    assert r.status_code == 503, r.text
    assert r.json()["error"]["reason"] == "apikeys_unavailable" and r.headers["retry-after"] == "1"
    assert "127.0.0.1" not in r.text  # where the SSO lives stays in the gateway's log
    # Once the cached entry expires, the cached key gets the same 503 (never a 401).
    while (r := await call(s, cached["key"])).status_code == 200:
        assert time.monotonic() - answered < TTL + 0.5, "a cached key outlived its TTL"
        await asyncio.sleep(0.02)
    assert r.status_code == 503 and r.json()["error"]["reason"] == "apikeys_unavailable", r.text
    # A crashed SSO still in the registry (its port refuses connections): 503 as well.
    registry = await open_registry(s.registry_url)
    ghost = Registration(registry, Instance("sso", "sso-ghost", "127.0.0.1", free_port()), ttl=3.0, interval=1.0)
    await ghost.start()
    try:
        await _until(lambda: bool(s.gw.view.instances("sso")))
        r = await call(s, fresh["key"])
        assert r.status_code == 503 and r.json()["error"]["reason"] == "apikeys_unavailable", r.text
    finally:
        await ghost.stop(deregister=True)
        await registry.close()
    # The SSO comes back (same database, same port): keys work again, nothing stuck.
    s.sso = build_sso(s.sso_settings)
    await s.sso.start(port=port)
    await _until(lambda: [i.instance_id for i in s.gw.view.instances("sso")] == [s.sso.instance.instance_id])
    for made in (fresh, cached):
        r = await call(s, made["key"])
        assert r.status_code == 200 and seen(r)["x-meshkit-subject"] == [made["subject"]], r.text


async def test_both_key_sources_are_refused_at_start(tmp_path):
    keys = tmp_path / "keys.yaml"
    keys.write_text("keys: []\n")
    settings = GatewaySettings(host="127.0.0.1", port=0, admin_port=0, registry_url="memory://",
                               api_keys_service="sso", api_keys_file=str(keys), access_log=False)
    gw = Gateway(settings, register=False)
    with pytest.raises(ConfigError) as err:
        await gw.start()
    assert "GATEWAY_API_KEYS_SERVICE" in err.value.message and "GATEWAY_API_KEYS_FILE" in err.value.message
    assert gw.view is None and gw.server is None  # refused before opening anything


def test_meshkit_up_has_the_gateway_ask_the_sso_for_api_keys(monkeypatch):
    from meshkit.cli.system import DEFAULT_SYSTEM, load_system
    from meshkit.sso_sdk import SERVICE

    system = load_system(DEFAULT_SYSTEM)
    env = system.get("gateway").env
    assert env["GATEWAY_API_KEYS_SERVICE"] == SERVICE and system.get(SERVICE) is not None
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("GATEWAY_API_KEYS_FILE", raising=False)
    assert GatewaySettings().api_keys_service == SERVICE
