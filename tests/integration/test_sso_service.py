"""The SSO as a running service on SQLite and PostgreSQL, with a real NATS for revocations.

One SSO per backend for the module (cheap argon2 parameters; the real ones are
tested once in tests/unit/test_sso_hashing.py). Tests use their own e-mail
addresses and client addresses (``X-Forwarded-For``, one trusted proxy), so the
throttling of one test never touches another.
"""

from __future__ import annotations

import asyncio
import base64
import os
import re
import time
import uuid

import httpx
import orjson
import pytest

from helpers.sso import (
    PASSWORD,
    Revocations,
    admin,
    bearer,
    email,
    ip,
    jti_of,
    settings_for,
    signup_login,
)
from meshkit.basis.testing import running
from meshkit.sso.main import build


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def database_url(request, tmp_path_factory):
    """A SQLite file, or the session's fresh PostgreSQL database (its tables are all sso_*)."""
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('sso-sqlite') / 'sso.db'}"
    return request.getfixturevalue("postgres_url")


@pytest.fixture(scope="module")
async def sso(database_url, tmp_path_factory, nats_server):
    tmp = tmp_path_factory.mktemp("sso")
    url = database_url
    settings = settings_for(url, nats_server, tmp)
    async with running(build(settings)) as svc:
        client = httpx.AsyncClient(base_url=svc.url, timeout=10)
        svc.state["url"], svc.state["settings"] = url, settings
        yield svc, client
        await client.aclose()


async def test_signup_login_userinfo_and_the_same_answer_for_a_taken_address(sso):
    _, c = sso
    address, pair = await signup_login(c)
    assert set(pair) == {"access_token", "refresh_token", "token_type", "expires_in"} and pair["expires_in"] > 800
    info = (await c.get("/v1/userinfo", headers=bearer(pair))).json()
    assert info["email"] == address.lower() and info["client_kind"] == "user"
    again = await c.post("/v1/signup", json={"email": address.lower(), "password": "another-passphrase-7"})
    fresh = await c.post("/v1/signup", json={"email": email(), "password": "another-passphrase-7"})
    assert (again.status_code, again.content) == (fresh.status_code, fresh.content) == (202, fresh.content)
    # The old password still works: a second sign-up changed nothing.
    assert (await c.post("/v1/login", json={"email": address, "password": PASSWORD}, headers=ip())).status_code == 200


async def test_signup_validates_and_explains(sso):
    _, c = sso
    r = await c.post("/v1/signup", json={"email": email(), "password": "Password2024!"})
    assert r.status_code == 422 and r.json()["error"]["reason"] == "weak_password"
    assert r.json()["error"]["details"][0]["loc"] == "password"
    r = await c.post("/v1/signup", json={"email": "nope", "password": PASSWORD})
    assert r.status_code == 422 and r.json()["error"]["details"][0]["loc"] == "email"
    assert (await c.post("/v1/signup", content=b"{not json")).status_code == 400


async def test_login_failures_do_not_reveal_accounts(sso):
    _, c = sso
    address, _ = await signup_login(c)
    headers = ip()
    unknown = await c.post("/v1/login", json={"email": email(), "password": PASSWORD}, headers=headers)
    wrong = await c.post("/v1/login", json={"email": address, "password": PASSWORD + "x"}, headers=headers)
    assert unknown.status_code == wrong.status_code == 401
    assert unknown.json() == wrong.json() == {"error": {"reason": "invalid_credentials",
                                                        "message": "the e-mail address or the password is wrong"}}


async def test_unknown_and_known_accounts_cost_the_same_hash(sso, tmp_path):
    """Both paths run exactly one argon2 verification, with the same parameters (so similar timing)."""
    svc, c = sso
    hasher = svc.state["hasher"]
    calls = []
    original = hasher.verify

    async def counting(encoded, password):
        calls.append(encoded.split("$")[3])  # the parameter field, e.g. m=256,t=1,p=1
        return await original(encoded, password)

    hasher.verify = counting
    try:
        address, _ = await signup_login(c)
        calls.clear()
        await c.post("/v1/login", json={"email": email(), "password": PASSWORD}, headers=ip())
        await c.post("/v1/login", json={"email": address, "password": "wrong-password-123"}, headers=ip())
    finally:
        hasher.verify = original
    assert len(calls) == 2 and calls[0] == calls[1]


async def test_brute_force_is_throttled_per_account_then_locked(sso):
    _, c = sso
    address, _ = await signup_login(c)
    statuses = []
    for _ in range(5):
        r = await c.post("/v1/login", json={"email": address, "password": "guess-guess-guess"}, headers=ip())
        statuses.append(r.status_code)
    assert statuses == [401, 401, 401, 401, 429]  # three free failures, then a delay (from any address)
    assert r.json()["error"]["reason"] == "login_throttled" and int(r.headers["retry-after"]) >= 1
    for _ in range(3):  # wait out each growing delay and fail again: the sixth failure locks
        await asyncio.sleep(float(r.json()["error"]["details"]["retry_after"]))
        r = await c.post("/v1/login", json={"email": address, "password": "guess-guess-guess"}, headers=ip())
        r = await c.post("/v1/login", json={"email": address, "password": "guess-guess-guess"}, headers=ip())
        if r.status_code == 429 and int(r.headers["retry-after"]) > 5:
            break
    locked = await c.post("/v1/login", json={"email": address, "password": PASSWORD}, headers=ip())
    assert locked.status_code == 429 and int(locked.headers["retry-after"]) > 5  # even the right password


async def test_brute_force_is_throttled_per_address_and_for_unknown_accounts_alike(sso):
    _, c = sso
    headers = ip()
    statuses = [(await c.post("/v1/login", json={"email": email(), "password": "x" * 12}, headers=headers)).status_code
                for _ in range(10)]
    assert statuses[:9] == [401] * 9 and statuses[9] == 429  # spraying many accounts from one address
    other = await c.post("/v1/login", json={"email": email(), "password": "x" * 12}, headers=ip())
    assert other.status_code == 401  # other clients are not affected


async def test_refresh_rotates_and_reuse_ends_the_session_on_the_bus(sso, nats_server):
    _, c = sso
    _, first = await signup_login(c)
    Revocations.url = nats_server
    async with Revocations() as bus:
        second = (await c.post("/v1/refresh", json={"refresh_token": first["refresh_token"]})).json()
        assert second["refresh_token"] != first["refresh_token"]
        reuse = await c.post("/v1/refresh", json={"refresh_token": first["refresh_token"]})
        assert reuse.status_code == 401 and reuse.json()["error"]["reason"] == "invalid_grant"
        assert await bus.wait_for(jti_of(second["access_token"]))
        assert await bus.wait_for(jti_of(first["access_token"]))
    assert (await c.get("/v1/userinfo", headers=bearer(second))).status_code == 401
    assert (await c.post("/v1/refresh", json={"refresh_token": second["refresh_token"]})).status_code == 401


async def test_logout_revokes_access_and_refresh(sso, nats_server):
    _, c = sso
    _, pair = await signup_login(c)
    Revocations.url = nats_server
    async with Revocations() as bus:
        r = await c.post("/v1/logout", json={"refresh_token": pair["refresh_token"]}, headers=bearer(pair))
        assert r.status_code == 204
        assert await bus.wait_for(jti_of(pair["access_token"]))
    assert (await c.get("/v1/userinfo", headers=bearer(pair))).status_code == 401
    assert (await c.post("/v1/refresh", json={"refresh_token": pair["refresh_token"]})).status_code == 401


async def test_change_password_ends_other_sessions_only(sso):
    _, c = sso
    address, mine = await signup_login(c)
    other = (await c.post("/v1/login", json={"email": address, "password": PASSWORD}, headers=ip())).json()
    weak = await c.post("/v1/password", json={"current_password": PASSWORD, "new_password": "password12345"},
                        headers={**bearer(mine), **ip()})
    assert weak.status_code == 422
    r = await c.post("/v1/password", json={"current_password": PASSWORD, "new_password": "new-tram-ankle-94"},
                     headers={**bearer(mine), **ip()})
    assert r.status_code == 200 and r.json()["other_sessions_ended"] == 1
    assert (await c.get("/v1/userinfo", headers=bearer(mine))).status_code == 200
    assert (await c.get("/v1/userinfo", headers=bearer(other))).status_code == 401
    assert (await c.post("/v1/refresh", json={"refresh_token": other["refresh_token"]})).status_code == 401
    old = await c.post("/v1/login", json={"email": address, "password": PASSWORD}, headers=ip())
    assert old.status_code == 401
    assert (await c.post("/v1/login", json={"email": address, "password": "new-tram-ankle-94"},
                         headers=ip())).status_code == 200


async def test_admin_api_rbac_abac_and_audit(sso):
    _svc, c = sso
    _address, user = await signup_login(c)
    me = (await c.get("/v1/userinfo", headers=bearer(user))).json()["sub"]
    assert (await c.get("/v1/admin/roles")).status_code == 401
    denied = await c.get("/v1/admin/roles", headers=bearer(user))
    assert denied.status_code == 403 and denied.json()["error"]["details"] == {"missing_permissions": ["sso:admin"]}
    a = await admin(c)
    tag = uuid.uuid4().hex[:6]
    for perm in (f"orders{tag}:read", f"orders{tag}:cancel"):
        assert (await c.post("/v1/admin/permissions", json={"name": perm}, headers=a)).status_code == 201
    role = f"customer-{tag}"
    assert (await c.post("/v1/admin/roles", json={"name": role}, headers=a)).status_code == 201
    g = await c.post(f"/v1/admin/roles/{role}/grants", json={"permission": f"orders{tag}:read"}, headers=a)
    assert g.status_code == 201
    g = await c.post(f"/v1/admin/roles/{role}/grants", headers=a,
                     json={"permission": f"orders{tag}:cancel", "condition": "resource.owner == subject.id"})
    assert g.status_code == 201
    bad = await c.post(f"/v1/admin/roles/{role}/grants", headers=a,
                       json={"permission": f"orders{tag}:cancel", "condition": "__import__('os')"})
    assert bad.status_code == 422 and bad.json()["error"]["details"][0]["loc"] == "condition"
    unknown = await c.post(f"/v1/admin/roles/{role}/grants", json={"permission": "nope:read"}, headers=a)
    assert unknown.status_code == 422
    assert (await c.put(f"/v1/admin/subjects/{me}/roles/{role}", headers=a)).json()["roles"] == [role]
    assert (await c.put("/v1/admin/subjects/usr_nobody/roles/admin", headers=a)).status_code == 404
    # A new token carries the unconditional permission only; the condition is the engine's.
    fresh = (await c.post("/v1/refresh", json={"refresh_token": user["refresh_token"]})).json()
    assert (await c.get("/v1/userinfo", headers=bearer(fresh))).json()["permissions"] == [f"orders{tag}:read"]
    ask = lambda perm, res: c.post("/v1/authorize", headers=bearer(fresh),  # noqa: E731
                                   json={"permission": perm, "resource": res})
    assert (await ask(f"orders{tag}:cancel", {"owner": me})).json()["allowed"] is True
    no = (await ask(f"orders{tag}:cancel", {"owner": "someone-else"})).json()
    assert no["allowed"] is False and no["reason"] == "condition_failed" and "resource.owner" in no["explanation"]
    assert (await ask(f"orders{tag}:refund", {})).json()["reason"] == "missing_permission"
    # A pattern grant is carried expanded to the registered permissions it covers (for exact route checks).
    wide = f"wide-{tag}"
    await c.post("/v1/admin/roles", json={"name": wide}, headers=a)
    await c.post(f"/v1/admin/roles/{wide}/grants", json={"permission": f"orders{tag}:*"}, headers=a)
    await c.put(f"/v1/admin/subjects/{me}/roles/{wide}", headers=a)
    widened = (await c.post("/v1/refresh", json={"refresh_token": fresh["refresh_token"]})).json()
    assert (await c.get("/v1/userinfo", headers=bearer(widened))).json()["permissions"] == [
        f"orders{tag}:*", f"orders{tag}:cancel", f"orders{tag}:read"]
    other = await c.post("/v1/authorize", headers=bearer(fresh), json={"permission": "x:y", "subject": "usr_x"})
    assert other.status_code == 403
    policy = (await c.get("/v1/policy", headers=bearer(fresh))).json()
    assert any(g["condition"] == "resource.owner == subject.id" for g in policy["roles"][role])
    audit = (await c.get("/v1/admin/audit?limit=200", headers=a)).json()["items"]
    actions = {(e["action"], e["target"]) for e in audit}
    assert ("role.created", role) in actions and ("role.assigned", me) in actions
    # Each login opened a session (its sid), from the client's address: audited too.
    payload = user["access_token"].split(".")[1]
    sid = orjson.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))["sid"]
    opened = [e for e in audit if e["action"] == "session.opened" and e["target"] == sid]
    assert len(opened) == 1 and opened[0]["actor"] == me and set(opened[0]["details"]) == {"ip"}
    assert all(e["actor"] and e["at"] for e in audit)
    assert all("password" not in orjson.dumps(e["details"]).decode() for e in audit)


async def test_disabling_a_user_ends_sessions_and_login(sso):
    _, c = sso
    address, user = await signup_login(c)
    me = (await c.get("/v1/userinfo", headers=bearer(user))).json()["sub"]
    a = await admin(c)
    assert (await c.post(f"/v1/admin/users/{me}/disable", headers=a)).json()["disabled"] is True
    assert (await c.get("/v1/userinfo", headers=bearer(user))).status_code == 401
    r = await c.post("/v1/login", json={"email": address, "password": PASSWORD}, headers=ip())
    assert r.status_code == 401 and r.json()["error"]["reason"] == "invalid_credentials"
    assert (await c.post(f"/v1/admin/users/{me}/enable", headers=a)).json()["disabled"] is False


async def test_service_accounts_and_api_keys(sso):
    _, c = sso
    a = await admin(c)
    tag = uuid.uuid4().hex[:6]
    await c.post("/v1/admin/permissions", json={"name": f"stock{tag}:read"}, headers=a)
    await c.post("/v1/admin/permissions", json={"name": f"stock{tag}:write"}, headers=a)
    await c.post("/v1/admin/roles", json={"name": f"robot-{tag}"}, headers=a)
    for p in ("read", "write"):
        await c.post(f"/v1/admin/roles/robot-{tag}/grants", json={"permission": f"stock{tag}:{p}"}, headers=a)
    sa = (await c.post("/v1/admin/service-accounts", json={"name": f"robot-{tag}", "roles": [f"robot-{tag}"]},
                       headers=a)).json()
    creds = {"grant_type": "client_credentials", "client_id": sa["client_id"], "client_secret": sa["client_secret"]}
    tok = await c.post("/oauth/token", data={**creds, "scope": f"stock{tag}:read"})
    assert tok.status_code == 200 and tok.json()["scope"] == f"stock{tag}:read" and "refresh_token" not in tok.json()
    info = (await c.get("/v1/userinfo", headers=bearer(tok.json()))).json()
    assert info["client_kind"] == "service" and info["permissions"] == [f"stock{tag}:read"]
    basic = base64.b64encode(f"{sa['client_id']}:{sa['client_secret']}".encode()).decode()
    r = await c.post("/oauth/token", data={"grant_type": "client_credentials"}, headers={"authorization": f"Basic {basic}"})
    assert sorted(r.json()["scope"].split()) == [f"stock{tag}:read", f"stock{tag}:write"]
    assert (await c.post("/oauth/token", data={**creds, "client_secret": "wrong"})).status_code == 401
    assert (await c.post("/oauth/token", data={**creds, "scope": "sso:admin"})).status_code == 403
    assert (await c.post("/oauth/token", data={"grant_type": "password"})).status_code == 400
    assert "client_secret" not in orjson.dumps((await c.get("/v1/admin/service-accounts", headers=a)).json()).decode()
    audit = (await c.get("/v1/admin/audit?limit=50", headers=a)).json()["items"]
    issued = [e for e in audit if e["action"] == "token.issued" and e["target"] == sa["id"]]
    assert [e["details"] for e in issued] == [  # newest first; the refused requests issued nothing
        {"grant": "client_credentials", "scope": f"stock{tag}:read stock{tag}:write"},
        {"grant": "client_credentials", "scope": f"stock{tag}:read"}]

    made = (await c.post("/v1/admin/api-keys", headers=a,
                         json={"name": "partner", "subject": sa["id"], "scopes": [f"stock{tag}:read"]})).json()
    key = made["key"]
    assert key.startswith("mk_") and "key" not in (await c.get("/v1/admin/api-keys", headers=a)).json()["items"][-1]
    seen = (await c.post("/v1/apikeys/introspect", json={"key": key})).json()
    assert seen["active"] and seen["subject"] == sa["id"] and seen["permissions"] == [f"stock{tag}:read"]
    assert (await c.post("/v1/apikeys/introspect", json={"key": key + "x"})).json() == {"active": False}
    assert (await c.delete(f"/v1/admin/api-keys/{made['id']}", headers=a)).status_code == 204
    assert (await c.post("/v1/apikeys/introspect", json={"key": key})).json() == {"active": False}
    short = (await c.post("/v1/admin/api-keys", headers=a,
                          json={"name": "short", "subject": sa["id"], "scopes": [], "expires_in": 0.3})).json()
    await asyncio.sleep(0.4)
    assert (await c.post("/v1/apikeys/introspect", json={"key": short["key"]})).json() == {"active": False}


async def test_discovery_documents(sso):
    svc, c = sso
    conf = (await c.get("/.well-known/openid-configuration")).json()
    assert conf["issuer"] == svc.state["settings"].issuer and conf["jwks_uri"].endswith("/.well-known/jwks.json")
    assert conf["id_token_signing_alg_values_supported"] == ["EdDSA"]
    jwks = (await c.get("/.well-known/jwks.json")).json()
    assert len(jwks["keys"]) >= 2 and all("d" not in k for k in jwks["keys"])
    for grant in conf["grant_types_supported"]:  # each one the token endpoint takes (bad credentials: not 400)
        r = await c.post("/oauth/token", data={"grant_type": grant, "refresh_token": "x" * 40, "username": "a@b.cd",
                                               "password": PASSWORD, "client_id": "sa_x", "client_secret": "x"})
        assert r.json()["error"]["reason"] != "unsupported_grant_type", grant


async def test_keys_rotate_on_demand_persist_sealed_and_serve_a_second_instance(sso, nats_server, tmp_path):
    svc, c = sso
    a = await admin(c)
    _, pair = await signup_login(c)
    before = (await c.get("/.well-known/jwks.json")).json()["keys"]
    rotated = (await c.post("/v1/admin/keys/rotate", headers=a)).json()
    assert rotated["current"] == before[1]["kid"]  # the published next key took over
    after = [k["kid"] for k in (await c.get("/.well-known/jwks.json")).json()["keys"]]
    assert after[0] == rotated["current"] and before[0]["kid"] in after and len(after) == 3
    assert (await c.get("/v1/userinfo", headers=bearer(pair))).status_code == 200  # token in flight still valid
    # Private keys are sealed at rest: the raw Ed25519 seed of the current key is not in the database.
    seed = svc.state["keys"].signing_key()[2].private_bytes_raw()
    from sqlalchemy import text

    async with svc.state["engine"].connect() as conn:
        blobs = [bytes(r[0]) for r in await conn.execute(text("SELECT sealed_private FROM sso_signing_keys"))]
    assert blobs and all(seed not in b for b in blobs)
    # A second instance on the same database (or this one after a restart) has the same keys and sessions.
    settings = settings_for(svc.state["url"], nats_server, tmp_path)
    async with running(build(settings)) as second:
        async with httpx.AsyncClient(base_url=second.url) as c2:
            assert (await c2.get("/v1/userinfo", headers=bearer(pair))).status_code == 200
            assert [k["kid"] for k in (await c2.get("/.well-known/jwks.json")).json()["keys"]] == after
            assert (await c2.post("/v1/refresh", json={"refresh_token": pair["refresh_token"]})).status_code == 200
    # With another key-encryption key the keys cannot be opened: the start fails, saying why.
    wrong = settings_for(svc.state["url"], nats_server, tmp_path,
                         key_encryption_key=base64.urlsafe_b64encode(os.urandom(32)).decode())
    from meshkit.basis.errors import ConfigError

    with pytest.raises(ConfigError, match="SSO_KEY_ENCRYPTION_KEY"):
        await build(wrong).start()


async def test_a_revocation_made_by_one_instance_is_known_to_another(sso, nats_server, tmp_path):
    svc, c = sso
    _, pair = await signup_login(c)
    async with running(build(settings_for(svc.state["url"], nats_server, tmp_path))) as second:
        async with httpx.AsyncClient(base_url=second.url) as c2:
            assert (await c2.get("/v1/userinfo", headers=bearer(pair))).status_code == 200
            assert (await c.post("/v1/logout", headers=bearer(pair))).status_code == 204  # at the first instance
            t0 = time.monotonic()
            while (await c2.get("/v1/userinfo", headers=bearer(pair))).status_code != 401:
                assert time.monotonic() - t0 < 1.0
                await asyncio.sleep(0.01)


async def test_first_start_prints_a_one_time_admin_password_once(nats_server, tmp_path, capsys):
    url = f"sqlite+aiosqlite:///{tmp_path / 'fresh.db'}"
    settings = settings_for(url, nats_server, tmp_path, admin_password=None, admin_email="root@example.com")
    async with running(build(settings)) as svc:
        printed = capsys.readouterr().out
        match = re.search(r"one-time password\n\*\*\*   (\S+)\n", printed)
        assert match, printed
        async with httpx.AsyncClient(base_url=svc.url) as c:
            r = await c.post("/v1/login", json={"email": "root@example.com", "password": match[1]}, headers=ip())
            assert r.status_code == 200
            assert (await c.get("/v1/admin/users", headers=bearer(r.json()))).status_code == 200
    async with running(build(settings)):
        assert "one-time password" not in capsys.readouterr().out  # never again


async def test_paging_parameters_are_ascii_numbers_or_a_422(sso):
    """str.isdigit() is true for '²' and '١', which int() refuses or reads: both were let through (a 500)."""
    _, c = sso
    a = await admin(c)
    for path in ("/v1/admin/users?limit=%C2%B2", "/v1/admin/audit?before=%C2%B2", "/v1/admin/audit?limit=0",
                 "/v1/admin/users?limit=%D9%A1", "/v1/admin/audit?before=-1"):
        r = await c.get(path, headers=a)
        assert r.status_code == 422 and r.json()["error"]["reason"] == "validation_failed", (path, r.text)
    newest = (await c.get("/v1/admin/audit?limit=2", headers=a)).json()["items"]
    older = (await c.get(f"/v1/admin/audit?limit=1&before={newest[0]['id']}", headers=a)).json()["items"]
    assert len(newest) == 2 and older == newest[1:]


async def test_hostile_input_is_a_structured_4xx_never_a_500(sso):
    """A NUL character anywhere PostgreSQL would see it, and an expiry no date can hold, were 500s."""
    _, c = sso
    a = await admin(c)
    nul = "a\u0000b"
    sent = [
        c.post("/v1/login", json={"email": f"{nul}@example.com", "password": PASSWORD}, headers=ip()),
        c.post("/v1/signup", json={"email": f"{nul}@example.com", "password": PASSWORD}),
        c.post("/v1/authorize", json={"permission": "a:b", "subject": nul}, headers=a),
        c.get("/v1/admin/users?after=a%00b", headers=a),
        c.get("/v1/admin/users/a%00b", headers=a),
        c.post("/v1/admin/users/a%00b/disable", headers=a),
        c.put("/v1/admin/subjects/a%00b/roles/admin", headers=a),
        c.delete("/v1/admin/permissions/a%00b", headers=a),
        c.delete("/v1/admin/api-keys/a%00b", headers=a),
        c.post("/v1/admin/service-accounts/a%00b/secret", headers=a),
        c.post("/v1/admin/users", json={"email": email(), "password": PASSWORD, "tenant": nul}, headers=a),
        c.post("/v1/admin/permissions", json={"name": "x:y", "description": nul}, headers=a),
        c.post("/v1/admin/roles", json={"name": "nul-role", "description": nul}, headers=a),
        c.post("/v1/admin/service-accounts", json={"name": nul}, headers=a),
        c.post("/v1/admin/api-keys", json={"name": nul, "subject": "partner"}, headers=a),
        c.post("/v1/admin/api-keys", json={"name": "k", "subject": "partner", "expires_in": 1e300}, headers=a),
        c.post("/v1/admin/api-keys", json={"name": "k", "subject": "partner", "expires_in": 1e10}, headers=a),
        c.post("/v1/admin/api-keys", headers={**a, "content-type": "application/json"},
               content=b'{"name": "k", "subject": "partner", "expires_in": Infinity}'),
        c.post("/oauth/token", data={"grant_type": "client_credentials", "client_id": nul, "client_secret": "x"}),
    ]
    for r in [await s for s in sent]:
        assert 400 <= r.status_code < 500 and set(r.json()["error"]) >= {"reason", "message"}, (r.request.url, r.text)
    basic = base64.b64encode(f"{nul}:secret".encode()).decode()
    r = await c.post("/oauth/token", data={"grant_type": "client_credentials"}, headers={"authorization": f"Basic {basic}"})
    assert r.status_code == 401 and r.json()["error"]["reason"] == "invalid_client"
    assert not any(k["name"] == nul for k in (await c.get("/v1/admin/api-keys", headers=a)).json()["items"])
    ten_years = await c.post("/v1/admin/api-keys", json={"name": "k", "subject": "partner", "expires_in": 3650 * 86400},
                             headers=a)
    assert ten_years.status_code == 201


async def test_a_narrowed_client_credentials_token_has_nothing_beyond_its_scope(sso):
    """The token kept the account's roles, and a role brings all its grants: the engine allowed 'write'."""
    _, c = sso
    a = await admin(c)
    tag = uuid.uuid4().hex[:6]
    await c.post("/v1/admin/roles", json={"name": f"stocker-{tag}"}, headers=a)
    for p in ("read", "write"):
        await c.post("/v1/admin/permissions", json={"name": f"shelf{tag}:{p}"}, headers=a)
        await c.post(f"/v1/admin/roles/stocker-{tag}/grants", json={"permission": f"shelf{tag}:{p}"}, headers=a)
    sa = (await c.post("/v1/admin/service-accounts", json={"name": f"stocker-{tag}", "roles": [f"stocker-{tag}"]},
                       headers=a)).json()
    creds = {"grant_type": "client_credentials", "client_id": sa["client_id"], "client_secret": sa["client_secret"]}
    narrow = (await c.post("/oauth/token", data={**creds, "scope": f"shelf{tag}:read"})).json()
    info = (await c.get("/v1/userinfo", headers=bearer(narrow))).json()
    assert info["permissions"] == [f"shelf{tag}:read"] and info["roles"] == []
    ask = lambda tok, perm: c.post("/v1/authorize", json={"permission": perm}, headers=bearer(tok))  # noqa: E731
    assert (await ask(narrow, f"shelf{tag}:read")).json()["allowed"] is True
    assert (await ask(narrow, f"shelf{tag}:write")).json()["allowed"] is False
    full = (await c.post("/oauth/token", data=creds)).json()  # no scope: the account's roles as they are
    assert (await c.get("/v1/userinfo", headers=bearer(full))).json()["roles"] == [f"stocker-{tag}"]
    assert (await ask(full, f"shelf{tag}:write")).json()["allowed"] is True


async def test_a_service_account_with_an_unknown_role_is_not_made_at_all(sso):
    """The account was stored before its roles were checked: a 404, and an account whose secret nobody saw."""
    _, c = sso
    a = await admin(c)
    name = f"half-{uuid.uuid4().hex[:6]}"
    r = await c.post("/v1/admin/service-accounts", json={"name": name, "roles": ["admin", "no-such-role"]}, headers=a)
    assert r.status_code == 404 and r.json()["error"]["reason"] == "role_not_found"
    assert name not in [s["name"] for s in (await c.get("/v1/admin/service-accounts", headers=a)).json()["items"]]
    again = await c.post("/v1/admin/service-accounts", json={"name": name, "roles": []}, headers=a)
    assert again.status_code == 201  # the name is free



async def test_an_api_key_stops_while_its_subject_is_disabled(sso):
    """Disabling a user or a service account ended its sessions, but the API keys acting as it went on working."""
    _, c = sso
    a = await admin(c)
    user = (await c.post("/v1/admin/users", json={"email": email(), "password": PASSWORD}, headers=a)).json()
    robot = (await c.post("/v1/admin/service-accounts", json={"name": f"keyed-{uuid.uuid4().hex[:6]}"},
                          headers=a)).json()
    for subject, off, on in ((user["id"], f"/v1/admin/users/{user['id']}/disable", f"/v1/admin/users/{user['id']}/enable"),
                             (robot["id"], f"/v1/admin/service-accounts/{robot['id']}/disable", None)):
        key = (await c.post("/v1/admin/api-keys", json={"name": "k", "subject": subject, "scopes": []},
                            headers=a)).json()["key"]
        assert (await c.post("/v1/apikeys/introspect", json={"key": key})).json()["active"] is True
        assert (await c.post(off, headers=a)).status_code in (200, 204)
        assert (await c.post("/v1/apikeys/introspect", json={"key": key})).json() == {"active": False}
        if on:
            await c.post(on, headers=a)
            assert (await c.post("/v1/apikeys/introspect", json={"key": key})).json()["active"] is True
    partner = (await c.post("/v1/admin/api-keys", json={"name": "k", "subject": "partner-acme"}, headers=a)).json()
    assert (await c.post("/v1/apikeys/introspect", json={"key": partner["key"]})).json()["active"] is True



async def test_a_password_is_the_same_password_however_its_accents_are_encoded(sso):
    """'é' typed on one system arrives composed, on another as 'e' + a combining accent: it was a wrong password."""
    import unicodedata

    svc, c = sso
    composed = "crème-brûlée-façade-92"
    decomposed = unicodedata.normalize("NFD", composed)
    assert composed != decomposed
    address = email()
    assert (await c.post("/v1/signup", json={"email": address, "password": decomposed})).status_code == 202
    for typed in (composed, decomposed):
        r = await c.post("/v1/login", json={"email": address, "password": typed}, headers=ip())
        assert r.status_code == 200, (typed, r.text)
    # A hash made before passwords were normalised (of the password as typed) still opens, and is upgraded.
    user = await svc.state["accounts"].by_email(address)
    legacy = await svc.state["hasher"].hash(decomposed)
    await svc.state["accounts"]._users.set_password(user.id, legacy, user.updated_at, None)
    assert (await c.post("/v1/login", json={"email": address, "password": decomposed}, headers=ip())).status_code == 200
    assert (await svc.state["accounts"].by_email(address)).password_hash != legacy
    assert (await c.post("/v1/login", json={"email": address, "password": composed}, headers=ip())).status_code == 200


async def test_a_rotated_secret_or_a_disabled_account_ends_the_tokens_it_got(sso, nats_server):
    """Client-credentials tokens have no session: rotating a leaked secret, or disabling the account, left every
    token minted with it working on every gateway until it expired (15 min)."""
    _, c = sso
    a = await admin(c)
    sa = (await c.post("/v1/admin/service-accounts", json={"name": f"leaky-{uuid.uuid4().hex[:6]}"},
                       headers=a)).json()
    creds = {"grant_type": "client_credentials", "client_id": sa["client_id"], "client_secret": sa["client_secret"]}
    stolen = (await c.post("/oauth/token", data=creds)).json()
    assert (await c.get("/v1/userinfo", headers=bearer(stolen))).status_code == 200
    Revocations.url = nats_server
    async with Revocations() as bus:
        fresh = (await c.post(f"/v1/admin/service-accounts/{sa['id']}/secret", headers=a)).json()
        assert await bus.wait_for(jti_of(stolen["access_token"]))  # every gateway hears of it
        assert (await c.get("/v1/userinfo", headers=bearer(stolen))).status_code == 401
        assert (await c.post("/oauth/token", data=creds)).status_code == 401
        new = (await c.post("/oauth/token", data={**creds, "client_secret": fresh["client_secret"]})).json()
        assert (await c.get("/v1/userinfo", headers=bearer(new))).status_code == 200
        assert (await c.post(f"/v1/admin/service-accounts/{sa['id']}/disable", headers=a)).status_code == 204
        assert await bus.wait_for(jti_of(new["access_token"]))
    assert (await c.get("/v1/userinfo", headers=bearer(new))).status_code == 401


async def test_the_advertised_revocation_endpoint_takes_an_rfc_7009_request(sso):
    """Discovery names /logout as revocation_endpoint; an OAuth client posting token=... there got 400 invalid_json."""
    _, c = sso
    conf = (await c.get("/.well-known/openid-configuration")).json()
    path = "/v1/" + conf["revocation_endpoint"].rsplit("/", 1)[-1]
    _, pair = await signup_login(c)
    r = await c.post(path, data={"token": pair["refresh_token"], "token_type_hint": "refresh_token"})
    assert r.status_code == 200
    assert (await c.post("/v1/refresh", json={"refresh_token": pair["refresh_token"]})).status_code == 401
    assert (await c.get("/v1/userinfo", headers=bearer(pair))).status_code == 401  # its session's access token too
    _, other = await signup_login(c)
    assert (await c.post(path, data={"token": other["access_token"]})).status_code == 200
    assert (await c.get("/v1/userinfo", headers=bearer(other))).status_code == 401
    assert (await c.post("/v1/refresh", json={"refresh_token": other["refresh_token"]})).status_code == 401
    for token in ("x" * 40, "a.b.c", other["access_token"]):  # unknown, not ours, already revoked: nothing to tell
        assert (await c.post(path, data={"token": token})).status_code == 200
    assert (await c.post(path, data={"token_type_hint": "refresh_token"})).status_code == 400


async def test_an_administrator_whose_role_is_taken_loses_the_admin_api_at_once(sso):
    """The admin API trusted the token's permissions: a demoted administrator kept it for the token's lifetime,
    long enough to give the role back to themselves."""
    _, c = sso
    a = await admin(c)
    address = email()
    rogue = (await c.post("/v1/admin/users", json={"email": address, "password": PASSWORD}, headers=a)).json()
    await c.put(f"/v1/admin/subjects/{rogue['id']}/roles/admin", headers=a)
    token = bearer((await c.post("/v1/login", json={"email": address, "password": PASSWORD}, headers=ip())).json())
    assert (await c.get("/v1/admin/users", headers=token)).status_code == 200
    assert (await c.delete(f"/v1/admin/subjects/{rogue['id']}/roles/admin", headers=a)).status_code == 200
    denied = await c.get("/v1/admin/users", headers=token)
    assert denied.status_code == 403 and denied.json()["error"]["reason"] == "missing_permission"
    assert (await c.put(f"/v1/admin/subjects/{rogue['id']}/roles/admin", headers=token)).status_code == 403
    assert (await c.get(f"/v1/admin/users/{rogue['id']}", headers=a)).json()["roles"] == []


async def test_the_admin_api_takes_no_identity_from_headers(sso):
    """Behind the gateway (which strips them) the x-meshkit-* headers are trusted; at the SSO itself anyone who
    could reach it wrote x-meshkit-permissions: sso:admin and administered every identity."""
    _, c = sso
    a = await admin(c)
    boss = (await c.get("/v1/userinfo", headers=a)).json()["sub"]  # in every token the administrator shows
    _, user = await signup_login(c)
    me = (await c.get("/v1/userinfo", headers=bearer(user))).json()["sub"]
    for kind, subject in (("user", boss), ("apikey", "partner-acme")):
        forged = {"x-meshkit-subject": subject, "x-meshkit-permissions": "sso:admin", "x-meshkit-client": kind}
        for method, path in (("GET", "/v1/admin/users"), ("PUT", f"/v1/admin/subjects/{me}/roles/admin")):
            r = await c.request(method, path, headers=forged)
            assert r.status_code == 401 and r.json()["error"]["reason"] == "credential_required", (path, r.text)
    assert (await c.get(f"/v1/admin/users/{me}", headers=a)).json()["roles"] == []
    assert (await c.get("/v1/admin/users", headers={**forged, **a})).status_code == 200  # a token of ours: as before


async def test_logout_revokes_no_token_named_only_in_headers(sso):
    """A forged x-meshkit-token-id (every service behind the gateway sees its callers' ones) revoked that token."""
    _, c = sso
    _, victim = await signup_login(c)
    forged = {"x-meshkit-subject": "usr_someone", "x-meshkit-token-id": jti_of(victim["access_token"])}
    r = await c.post("/v1/logout", headers=forged)
    assert r.status_code == 401 and r.json()["error"]["reason"] == "credential_required"
    assert (await c.get("/v1/userinfo", headers=bearer(victim))).status_code == 200
