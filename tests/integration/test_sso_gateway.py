"""The SSO behind the real gateway (default routes), with the catalog as the protected service.

In one process on a real NATS: SSO + catalog registered in a NATS KV registry,
a gateway that trusts the SSO's JWKS and follows its revocations (stream ``SSO``).
Covers the end-to-end flow of issue 4, the token-attack suite (every forgery
rejected by the gateway), revocation within 1 s, a gateway started after a
revocation refusing the token, and client-sent identity headers never reaching
a service.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import time
import uuid

import httpx
import jwt
import pytest

from meshkit.basis.context import Identity
from meshkit.basis.seal import SEAL, seal, verify
from meshkit.basis.testing import running
from meshkit.gateway.app import Gateway
from meshkit.gateway.settings import GatewaySettings
from meshkit.services.catalog.main import build as build_catalog
from meshkit.services.catalog.settings import CatalogSettings
from meshkit.sso.main import build as build_sso
from meshkit.sso.settings import SsoSettings

PASSWORD = "tram-violet-ankle-93"
IDENTITY_KEY = os.urandom(32)
ADMIN = {"email": "admin@meshkit.local", "password": "admin-password-for-tests"}
PRODUCT = {"name": "Mug", "sku": "MUG-1", "price": {"amount": "9.50", "currency": "EUR"}}


@pytest.fixture(scope="module")
async def stack(nats_server, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("sso-gw")
    registry = f"{nats_server}?bucket=sso_gw_{uuid.uuid4().hex[:8]}"
    # The whole stack seals the identity it passes on, as under meshkit up (meshkit.basis.seal).
    common = dict(registry_url=registry, nats_url=nats_server, access_log=False, identity_key=IDENTITY_KEY.hex())
    sso_settings = SsoSettings(data_dir=tmp, argon2_time_cost=1, argon2_memory_kib=256,
                               key_encryption_key=base64.urlsafe_b64encode(os.urandom(32)).decode(),
                               admin_password=ADMIN["password"], **common)
    async with running(build_sso(sso_settings)) as sso, \
            running(build_catalog(CatalogSettings(data_dir=tmp, **common))):
        settings = GatewaySettings(host="127.0.0.1", port=0, admin_port=0, reload_interval=0,
                                   jwks_url=f"{sso.url}/.well-known/jwks.json", issuer=sso_settings.issuer,
                                   audience=sso_settings.audience, **common)
        gw = await Gateway(settings, register=False).start()
        try:
            await gw.view.wait_for("sso", 1, 5.0)
            await gw.view.wait_for("catalog", 1, 5.0)
            assert gw._revocations.done()  # start() returns once stored revocations are replayed
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{gw.port}", timeout=10) as client:
                yield sso, gw, client
        finally:
            await gw.stop(0.5)


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


async def new_user(c: httpx.AsyncClient, sso=None) -> tuple[str, dict]:
    """Sign up (at the SSO itself when given: the gateway rate-limits sign-ups per address) and log in."""
    address = f"e2e-{uuid.uuid4().hex[:8]}@example.com"
    if sso is None:
        r = await c.post("/api/sso/signup", json={"email": address, "password": PASSWORD})
    else:
        async with httpx.AsyncClient(base_url=sso.url) as direct:
            r = await direct.post("/v1/signup", json={"email": address, "password": PASSWORD})
    assert r.status_code == 202, r.text
    r = await c.post("/api/sso/login", json={"email": address, "password": PASSWORD})
    assert r.status_code == 200, r.text
    return address, r.json()


async def test_end_to_end_through_the_gateway(stack):
    _, _gw, c = stack
    _, pair = await new_user(c)
    me = (await c.get("/api/sso/userinfo", headers=bearer(pair["access_token"]))).json()["sub"]
    # No permission yet: the protected route answers 403, naming what is missing.
    r = await c.post("/api/catalog/products", json=PRODUCT, headers=bearer(pair["access_token"]))
    assert r.status_code == 403 and "catalog:write" in r.text
    # An administrator grants a role through the gateway's admin routes.
    admin = bearer((await c.post("/api/sso/login", json=ADMIN)).json()["access_token"])
    assert (await c.get("/api/sso/admin/roles", headers=bearer(pair["access_token"]))).status_code == 403
    await c.post("/api/sso/admin/permissions", json={"name": "catalog:write"}, headers=admin)
    assert (await c.post("/api/sso/admin/roles", json={"name": "catalog-editor"}, headers=admin)).status_code == 201
    r = await c.post("/api/sso/admin/roles/catalog-editor/grants", json={"permission": "catalog:write"}, headers=admin)
    assert r.status_code == 201
    assert (await c.put(f"/api/sso/admin/subjects/{me}/roles/catalog-editor", headers=admin)).status_code == 200
    # Refresh (rotation): the new token carries the permission; the call succeeds.
    pair2 = (await c.post("/api/sso/refresh", json={"refresh_token": pair["refresh_token"]})).json()
    assert pair2["refresh_token"] != pair["refresh_token"]
    r = await c.post("/api/catalog/products", json={**PRODUCT, "sku": f"MUG-{uuid.uuid4().hex[:6]}"},
                     headers=bearer(pair2["access_token"]))
    assert r.status_code == 201, r.text
    pair3 = (await c.post("/api/sso/refresh", json={"refresh_token": pair2["refresh_token"]})).json()
    assert (await c.get("/api/sso/userinfo", headers=bearer(pair3["access_token"]))).status_code == 200
    # Logout: the token is refused at the gateway (revocation on the bus), so is the refresh token.
    r = await c.post("/api/sso/logout", json={"refresh_token": pair3["refresh_token"]},
                     headers=bearer(pair3["access_token"]))
    assert r.status_code == 204
    await asyncio.sleep(0.2)
    assert (await c.get("/api/sso/userinfo", headers=bearer(pair3["access_token"]))).status_code == 401
    r = await c.post("/api/catalog/products", json=PRODUCT, headers=bearer(pair3["access_token"]))
    assert r.status_code == 401
    assert (await c.post("/api/sso/refresh", json={"refresh_token": pair3["refresh_token"]})).status_code == 401


async def test_a_revoked_token_is_refused_by_the_gateway_within_one_second(stack):
    sso, _gw, c = stack
    _, pair = await new_user(c, sso)
    headers = bearer(pair["access_token"])
    assert (await c.get("/api/sso/userinfo", headers=headers)).status_code == 200  # now in the gateway's cache
    # Revoke behind the gateway's back (directly at the SSO), then watch the gateway.
    async with httpx.AsyncClient(base_url=sso.url) as direct:
        assert (await direct.post("/v1/logout", headers=headers)).status_code == 204
    t0 = time.monotonic()
    while (await c.get("/api/sso/userinfo", headers=headers)).status_code != 401:
        assert time.monotonic() - t0 < 1.0, "the gateway still accepts a revoked token after 1 s"
        await asyncio.sleep(0.01)


async def test_a_gateway_started_after_a_revocation_refuses_the_token(stack):
    sso, gw, c = stack
    _, pair = await new_user(c, sso)
    headers = bearer(pair["access_token"])
    async with httpx.AsyncClient(base_url=sso.url) as direct:
        assert (await direct.post("/v1/logout", headers=headers)).status_code == 204  # before the new gateway exists
    later = await Gateway(gw.settings.model_copy(update={"port": 0, "admin_port": 0}), register=False).start()
    try:
        assert later._revocations.done()  # start() waited for the replay: no window for the revoked token
        await later.view.wait_for("sso", 1, 5.0)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{later.port}", timeout=10) as c2:
            ready = (await c2.get("/readyz")).json()
            assert ready["status"] == "ready" and "revocations" not in ready["checks"]
            later._revocations = asyncio.get_running_loop().create_future()  # as if still replaying
            r = await c2.get("/readyz")
            assert r.status_code == 503 and r.json()["error"]["details"]["failed"] == ["revocations"], r.text
            later._revocations.cancel()
            r = await c2.get("/api/sso/userinfo", headers=headers)
            assert r.status_code == 401 and "revoked" in r.headers["www-authenticate"], r.text
            _, other = await new_user(c2, sso)  # an unrevoked token still passes
            assert (await c2.get("/api/sso/userinfo", headers=bearer(other["access_token"]))).status_code == 200
    finally:
        await later.stop(0.5)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


ATTACKS = ["expired", "not_yet_valid", "wrong_iss", "wrong_aud", "alg_none", "hs256_with_public_key",
           "unknown_kid", "tampered_payload", "revoked", "refresh_reuse"]


@pytest.mark.parametrize("attack", ATTACKS)
async def test_token_attacks_are_rejected_by_the_gateway(stack, attack):
    sso, _gw, c = stack
    _, pair = await new_user(c, sso)
    me = (await c.get("/api/sso/userinfo", headers=bearer(pair["access_token"]))).json()["sub"]
    kid, alg, private = sso.state["keys"].signing_key()
    now = int(time.time())
    claims = {"iss": sso.settings.issuer, "aud": sso.settings.audience, "sub": me, "iat": now, "nbf": now,
              "exp": now + 300, "jti": uuid.uuid4().hex, "roles": ["admin"], "permissions": ["sso:admin"]}
    token = None
    if attack == "expired":
        claims.update(iat=now - 600, nbf=now - 600, exp=now - 120)
    elif attack == "not_yet_valid":
        claims.update(nbf=now + 600)
    elif attack == "wrong_iss":
        claims.update(iss="https://evil.example")
    elif attack == "wrong_aud":
        claims.update(aud="another-api")
    elif attack == "alg_none":
        token = f"{_b64(json.dumps({'alg': 'none', 'kid': kid}).encode())}.{_b64(json.dumps(claims).encode())}."
    elif attack == "hs256_with_public_key":
        import hashlib
        import hmac

        from cryptography.hazmat.primitives import serialization

        pem = private.public_key().public_bytes(serialization.Encoding.PEM,
                                                serialization.PublicFormat.SubjectPublicKeyInfo)
        signing_input = f"{_b64(json.dumps({'alg': 'HS256', 'kid': kid}).encode())}.{_b64(json.dumps(claims).encode())}"
        token = f"{signing_input}.{_b64(hmac.new(pem, signing_input.encode(), hashlib.sha256).digest())}"
    elif attack == "unknown_kid":
        from cryptography.hazmat.primitives.asymmetric import ed25519

        token = jwt.encode(claims, ed25519.Ed25519PrivateKey.generate(), algorithm="EdDSA", headers={"kid": "rogue"})
    elif attack == "tampered_payload":
        h, _p, s = pair["access_token"].split(".")
        token = f"{h}.{_b64(json.dumps(claims).encode())}.{s}"  # privileges added to a real signature
    elif attack == "revoked":
        token = pair["access_token"]
        assert (await c.post("/api/sso/logout", headers=bearer(token))).status_code == 204
        await asyncio.sleep(0.2)
    elif attack == "refresh_reuse":
        fresh = (await c.post("/api/sso/refresh", json={"refresh_token": pair["refresh_token"]})).json()
        reuse = await c.post("/api/sso/refresh", json={"refresh_token": pair["refresh_token"]})
        assert reuse.status_code == 401 and reuse.json()["error"]["reason"] == "invalid_grant"
        await asyncio.sleep(0.2)
        token = fresh["access_token"]  # the whole family died with the reuse
    if token is None:
        token = jwt.encode(claims, private, algorithm=alg, headers={"kid": kid})
    r = await c.get("/api/sso/userinfo", headers=bearer(token))
    assert r.status_code == 401, (attack, r.text)
    assert (await c.get("/api/sso/admin/roles", headers=bearer(token))).status_code == 401


async def test_client_identity_headers_never_reach_a_service(stack):
    sso, _, c = stack
    spoof = {"x-meshkit-subject": "usr_admin", "x-meshkit-permissions": "sso:admin,catalog:write",
             "x-meshkit-roles": "admin", "x-meshkit-client": "user", "x-meshkit-token-id": "x"}
    # The SSO's logout acts for the injected identity when there is one: it sees none.
    r = await c.post("/api/sso/logout", headers=spoof)
    assert r.status_code == 401 and r.json()["error"]["reason"] == "credential_required"
    assert (await c.post("/api/catalog/products", json=PRODUCT, headers=spoof)).status_code == 401
    _, pair = await new_user(c, sso)
    both = {**spoof, **bearer(pair["access_token"])}
    assert (await c.get("/api/sso/admin/roles", headers=both)).status_code == 403
    info = (await c.get("/api/sso/userinfo", headers=both)).json()
    assert info["sub"] != "usr_admin" and info["permissions"] == []


async def test_a_forged_identity_sent_past_the_gateway_is_not_believed(stack):
    # Before: a caller reaching a service directly chose its identity with x-meshkit-* headers
    # (the gateway strips them only from what passes through it).
    sso, gw, c = stack
    forged = {"x-meshkit-subject": "usr_admin", "x-meshkit-permissions": "sso:admin",
              "x-meshkit-roles": "admin", "x-meshkit-client": "user"}
    other_key = seal(forged, os.urandom(32), int(time.time()) + 60)
    async with httpx.AsyncClient(base_url=sso.url) as direct:
        assert (await direct.get("/v1/policy", headers=forged)).status_code == 401
        assert (await direct.get("/v1/policy", headers={**forged, SEAL: other_key})).status_code == 401
    # What the gateway passes on carries a seal the services accept (made once per identity, renewed).
    passed = dict((k.decode(), v.decode()) for k, v in gw.proxy._identity_headers(
        Identity("usr_1", permissions=frozenset({"catalog:write"}))))
    assert verify(passed, IDENTITY_KEY, time.time()) and not verify(passed, IDENTITY_KEY, time.time() + 3600)
    # Through the gateway the identity is sealed, and believed: /v1/authorize answers for the caller.
    _, pair = await new_user(c, sso)
    r = await c.post("/api/sso/authorize", json={"permission": "catalog:write"}, headers=bearer(pair["access_token"]))
    assert r.status_code == 200, r.text


async def test_discovery_and_machine_tokens_at_the_gateway_root(stack):
    sso, _gw, c = stack
    jwks = (await c.get("/.well-known/jwks.json")).json()
    assert {k["kid"] for k in jwks["keys"]} == {k["kid"] for k in sso.state["keys"].jwks()["keys"]}
    conf = (await c.get("/.well-known/openid-configuration")).json()
    assert conf["issuer"] == sso.settings.issuer and conf["token_endpoint"].endswith("/oauth/token")
    admin = bearer((await c.post("/api/sso/login", json=ADMIN)).json()["access_token"])
    await c.post("/api/sso/admin/permissions", json={"name": "catalog:write"}, headers=admin)
    role = f"importer-{uuid.uuid4().hex[:6]}"
    await c.post("/api/sso/admin/roles", json={"name": role}, headers=admin)
    await c.post(f"/api/sso/admin/roles/{role}/grants", json={"permission": "catalog:write"}, headers=admin)
    sa = (await c.post("/api/sso/admin/service-accounts", json={"name": role, "roles": [role]},
                       headers=admin)).json()
    tok = await c.post("/oauth/token", data={"grant_type": "client_credentials", "client_id": sa["client_id"],
                                             "client_secret": sa["client_secret"]})
    assert tok.status_code == 200, tok.text
    r = await c.post("/api/catalog/products", json={**PRODUCT, "sku": f"SA-{uuid.uuid4().hex[:6]}"},
                     headers=bearer(tok.json()["access_token"]))
    assert r.status_code == 201, r.text


async def test_sdk_client_and_api_keys_as_the_gateways_key_source(stack):
    """sso_sdk over the platform's ServiceClient; SsoApiKeys plugs into the gateway's Authenticator."""
    from meshkit.basis.client import ServiceClient
    from meshkit.gateway.security import Authenticator
    from meshkit.sso_sdk import SsoApiKeys, SsoClient

    _sso, gw, c = stack
    client = ServiceClient(gw.view, caller="test")
    try:
        sdk = SsoClient(client)
        admin = await sdk.login(ADMIN["email"], ADMIN["password"])
        assert (await sdk.userinfo(admin.access_token)).permissions == ["sso:admin"]
        decision = await sdk.authorize(admin.access_token, "sso:admin")
        assert decision.allowed and decision.reason == "role"
        policy = await sdk.policy(admin.access_token)
        assert "admin" in policy.roles()
        r = await c.post("/api/sso/admin/api-keys", headers=bearer(admin.access_token),
                         json={"name": "partner", "subject": "partner-acme", "scopes": ["catalog:write"]})
        made = r.json()
        keys = SsoApiKeys(sdk, ttl=0.2, negative_ttl=0.1)
        auth = Authenticator(api_keys=keys)
        who = await auth.authenticate(None, made["key"])
        assert who.subject == "partner-acme" and who.kind == "apikey" and who.permissions == {"catalog:write"}
        assert who.token_id == made["id"]
        with pytest.raises(Exception, match="unknown API key"):
            await auth.authenticate(None, made["key"][:-2] + "xx")
        await c.delete(f"/api/sso/admin/api-keys/{made['id']}", headers=bearer(admin.access_token))
        await asyncio.sleep(0.25)  # the cached answer expires; the revocation is seen
        with pytest.raises(Exception, match="unknown API key"):
            await auth.authenticate(None, made["key"])
        await sdk.logout(admin.access_token, admin.refresh_token)
    finally:
        await client.close()
