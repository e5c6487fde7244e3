"""The SSO under test: cheap settings, test users and admins, tokens, and a follower of its revocations."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import time
import uuid
from collections.abc import AsyncIterator

import httpx
import nats
import orjson
import pytest

from meshkit.basis.bus import Envelope, ensure_stream, follow
from meshkit.sso.settings import SsoSettings
from meshkit.sso_sdk.events import STREAM, TOKEN_REVOKED, TokenRevoked, revocation_stream

PASSWORD = "tram-violet-ankle-93"
KEK = base64.urlsafe_b64encode(os.urandom(32)).decode()


def settings_for(url: str, nats_url: str, tmp, **extra) -> SsoSettings:
    values = dict(
        database_url=url, nats_url=nats_url, registry_url=f"memory://sso-{uuid.uuid4().hex[:6]}", data_dir=tmp,
        argon2_time_cost=1, argon2_memory_kib=256, key_encryption_key=KEK, admin_password="admin-password-for-tests",
        access_log=False, throttle_base_delay=0.3, throttle_max_delay=2.0, account_free_failures=3,
        account_lockout_after=6, ip_free_failures=8, ip_lockout_after=40, lockout_seconds=30,
    )
    values.update(extra)
    return SsoSettings(**values)


@contextlib.asynccontextmanager
async def fresh_database(kind: str, tmp) -> AsyncIterator[str]:
    """An empty database of its own: a SQLite file in ``tmp``, or a new PostgreSQL database (dropped after)."""
    if kind == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp / f'fresh-{uuid.uuid4().hex[:6]}.db'}"
        return
    import asyncpg

    dsn = os.environ.get("MESHKIT_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres")
    name = f"meshkit_sso_{uuid.uuid4().hex[:10]}"
    try:
        conn = await asyncpg.connect(dsn)
    except Exception as exc:  # like the postgres_url fixture: no server is a skip
        pytest.skip(f"PostgreSQL at {dsn} refused the connection: {exc}")
    await conn.execute(f'CREATE DATABASE "{name}"')
    await conn.close()
    try:
        yield f"{dsn.rsplit('/', 1)[0].replace('postgresql://', 'postgresql+asyncpg://', 1)}/{name}"
    finally:
        conn = await asyncpg.connect(dsn)
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await conn.close()


def ip() -> dict[str, str]:
    """A client address of its own for one test (the gateway appends the real one last)."""
    return {"x-forwarded-for": f"10.{os.urandom(1)[0]}.{os.urandom(1)[0]}.{os.urandom(1)[0]}"}


def email() -> str:
    return f"user-{uuid.uuid4().hex[:10]}@Example.com"


def bearer(pair: dict) -> dict[str, str]:
    return {"authorization": f"Bearer {pair['access_token']}"}


async def signup_login(c: httpx.AsyncClient, address: str | None = None, headers=None) -> tuple[str, dict]:
    address = address or email()
    assert (await c.post("/v1/signup", json={"email": address, "password": PASSWORD})).status_code == 202
    r = await c.post("/v1/login", json={"email": address.upper(), "password": PASSWORD}, headers=headers or ip())
    assert r.status_code == 200, r.text
    return address, r.json()


async def admin(c: httpx.AsyncClient) -> dict[str, str]:
    r = await c.post("/v1/login", json={"email": "admin@meshkit.local", "password": "admin-password-for-tests"},
                     headers=ip())
    assert r.status_code == 200, r.text
    return bearer(r.json())


class Revocations:
    """Follows the SSO's revocation stream (``sso.token.revoked``) like a gateway does."""

    url: str

    def __init__(self) -> None:
        self.seen: dict[str, float] = {}

    async def __aenter__(self):
        self.nc = await nats.connect(self.url)
        js = self.nc.jetstream()
        await ensure_stream(js, revocation_stream())
        self.follower = await follow(js, TOKEN_REVOKED, self._on, stream=STREAM)
        assert await self.follower.wait_replayed(5.0)
        return self

    async def _on(self, env: Envelope) -> None:
        assert isinstance(env.data, TokenRevoked) and env.id == env.data.jti
        self.seen[env.data.jti] = env.data.exp

    async def __aexit__(self, *exc):
        await self.follower.stop()
        await self.nc.close()

    async def wait_for(self, jti: str, timeout: float = 1.0) -> bool:
        deadline = time.monotonic() + timeout
        while jti not in self.seen and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        return jti in self.seen


def jti_of(token: str) -> str:
    payload = token.split(".")[1]
    return orjson.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))["jti"]
