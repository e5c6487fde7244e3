"""The SSO under races and misuse an operator meets: instances starting or rotating at once, the last administrator.

Each test runs an SSO of its own on a database of its own (SQLite, then PostgreSQL), with a real NATS.
"""

from __future__ import annotations

import asyncio

import httpx
import pytest

from helpers.sso import PASSWORD, admin, email, fresh_database, settings_for
from meshkit.basis.storage import session_factory
from meshkit.basis.testing import running
from meshkit.sso.adapters import AesGcmSealer, SqlKeys, decode_key
from meshkit.sso.app import KeyRing
from meshkit.sso.main import build


@pytest.fixture(params=["sqlite", "postgres"])
async def database(request, tmp_path):
    async with fresh_database(request.param, tmp_path) as url:
        yield url


async def test_two_instances_starting_at_once_on_an_empty_database(database, nats_server, tmp_path):
    """Each made the first signing keys and the first administrator: one failed to start (409 duplicate_email),
    and two keys could be 'current' at once (the one rotation did not pick stayed current, and published, for good)."""
    first, second = (build(settings_for(database, nats_server, tmp_path / name)) for name in ("a", "b"))
    started = await asyncio.gather(first.start(), second.start(), return_exceptions=True)
    try:
        assert started == [None, None]
        states = [k.state for k in await first.state["keys"]._store.all()]
        assert sorted(states) == ["current", "next"]
        await first.state["keys"].reload()
        await second.state["keys"].reload()
        assert first.state["keys"].current.kid == second.state["keys"].current.kid
        async with httpx.AsyncClient(base_url=second.url) as c:
            assert (await c.get("/v1/admin/users", headers=await admin(c))).status_code == 200
    finally:
        for service, outcome in zip((first, second), started, strict=True):
            if outcome is None:
                await service.stop()


async def test_the_last_enabled_administrator_cannot_be_removed(database, nats_server, tmp_path):
    """An administrator could disable themselves, or the admin grant or permission be deleted: nobody was left
    to administer the SSO, and a restart did not help (the disabled user still held the role)."""
    async with running(build(settings_for(database, nats_server, tmp_path))) as svc:
        async with httpx.AsyncClient(base_url=svc.url) as c:
            a = await admin(c)
            me = (await c.get("/v1/userinfo", headers=a)).json()["sub"]
            second = (await c.post("/v1/admin/users", json={"email": email(), "password": PASSWORD}, headers=a)).json()
            await c.put(f"/v1/admin/subjects/{second['id']}/roles/admin", headers=a)
            assert (await c.post(f"/v1/admin/users/{second['id']}/disable", headers=a)).status_code == 200
            refused = [await c.post(f"/v1/admin/users/{me}/disable", headers=a),
                       await c.delete("/v1/admin/permissions/sso:admin", headers=a)]
            grant = next(g for g in (await c.get("/v1/admin/roles/admin", headers=a)).json()["grants"]
                         if g["permission"] == "sso:admin")
            refused.append(await c.delete(f"/v1/admin/roles/admin/grants/{grant['id']}", headers=a))
            assert [(r.status_code, r.json()["error"]["reason"]) for r in refused] == [
                (409, "last_admin"), (409, "protected"), (409, "protected")]
            assert (await c.get("/v1/admin/users", headers=a)).status_code == 200  # still an administrator
            # With another enabled administrator, the first may go (and the disabled one lose the role).
            assert (await c.delete(f"/v1/admin/subjects/{second['id']}/roles/admin", headers=a)).status_code == 200
            third = (await c.post("/v1/admin/users", json={"email": email(), "password": PASSWORD}, headers=a)).json()
            await c.put(f"/v1/admin/subjects/{third['id']}/roles/admin", headers=a)
            assert (await c.post(f"/v1/admin/users/{me}/disable", headers=a)).status_code == 200


async def test_a_rotation_racing_an_emergency_one_does_not_bring_the_leaked_key_back(database, nats_server, tmp_path):
    """Two instances rotating at once each wrote the keys as they had read them: the later write undid the
    emergency — the leaked key back in the JWKS as 'previous', the retired pending key signing as 'current'."""
    settings = settings_for(database, nats_server, tmp_path)
    async with running(build(settings)) as svc:
        mine = svc.state["keys"]
        leaked = mine.current.kid
        pending = next(k.kid for k in mine._keys if k.state == "next")
        other_store = SqlKeys(session_factory(svc.state["engine"]))
        other = KeyRing(other_store, AesGcmSealer(decode_key(settings.key_encryption_key.get_secret_value())))
        await other.load()
        read = other_store.all
        raced = []

        async def read_then_the_emergency_lands():
            keys = await read()
            if not raced:  # the other instance has read the keys; the emergency rotation commits now
                raced.append(await mine.rotate("usr_admin", emergency=True))
            return keys

        other_store.all = read_then_the_emergency_lands
        await other.rotate("system:schedule")
        states = {k.kid: k.state for k in await read()}
        assert states[leaked] == states[pending] == "retired"
        assert sorted(states.values()).count("current") == 1 and sorted(states.values()).count("next") == 1
        await mine.reload()
        assert mine.current.kid == raced[0].kid and {leaked, pending}.isdisjoint(k["kid"] for k in mine.jwks()["keys"])


async def test_the_bootstrap_administrator_is_not_whoever_signed_up_with_the_address(database, nats_server, tmp_path):
    """With no administrator left, a start made the SSO_ADMIN_EMAIL account the administrator as it was: someone
    who had signed up with that address kept their own password, and their session got sso:admin on refresh."""
    boss = email()
    async with running(build(settings_for(database, nats_server, tmp_path))) as svc:
        async with httpx.AsyncClient(base_url=svc.url) as c:
            assert (await c.post("/v1/signup", json={"email": boss, "password": PASSWORD})).status_code == 202
            squatter = (await c.post("/v1/login", json={"email": boss, "password": PASSWORD})).json()
        authz = svc.state["authz"]
        for holder in await authz.holders("admin"):  # nobody holds the role any more (say, two admins raced)
            await authz._store.unassign(holder, "admin", None)
    settings = settings_for(database, nats_server, tmp_path, admin_email=boss, admin_password="the-operators-choice-7")
    async with running(build(settings)) as svc:
        async with httpx.AsyncClient(base_url=svc.url) as c:
            assert (await c.post("/v1/login", json={"email": boss, "password": PASSWORD})).status_code == 401
            assert (await c.post("/v1/refresh", json={"refresh_token": squatter["refresh_token"]})).status_code == 401
            r = await c.post("/v1/login", json={"email": boss, "password": "the-operators-choice-7"})
            assert (await c.get("/v1/admin/users", headers={"authorization": f"Bearer {r.json()['access_token']}"})
                    ).status_code == 200


async def test_a_database_where_instances_raced_before_still_migrates(database, nats_server, tmp_path):
    """Migration 0002 (one current key) must not fail on the duplicates the old race left behind."""
    from sqlalchemy import text

    from meshkit.basis.storage import create_engine

    settings = settings_for(database, nats_server, tmp_path)
    async with running(build(settings)) as svc:
        ring = svc.state["keys"]
        old = ring.current.kid
    engine = create_engine(settings.database)
    async with engine.begin() as conn:  # back to a database at 0001 ...
        await conn.execute(text("DROP INDEX uq_sso_signing_keys_current"))
        await conn.execute(text("DROP TABLE sso_machine_tokens"))
        await conn.execute(text("UPDATE alembic_version_sso SET version_num = '0001'"))
        await conn.execute(text("UPDATE sso_signing_keys SET state = 'current'"))  # ... where two keys are current
    await engine.dispose()
    async with running(build(settings)) as svc:  # migrates again, then starts
        states = sorted(k["state"] for k in svc.state["keys"].states())
        assert states == ["current", "previous"] and old in {k["kid"] for k in svc.state["keys"].jwks()["keys"]}
