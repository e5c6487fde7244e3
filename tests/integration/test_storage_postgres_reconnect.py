"""A pooled PostgreSQL connection the server killed is replaced at checkout: the user's transaction succeeds.

Real server: the pool's backends are ended with ``pg_terminate_backend`` (what a
restart or failover does to them), then a transaction runs on the same engine.
"""

from __future__ import annotations

import asyncio

import asyncpg
import pytest
from sqlalchemy import text

from meshkit.basis.storage import engine as engine_module
from meshkit.basis.storage import session_factory, transaction
from meshkit.basis.storage.testing import scratch_engine

pytestmark = pytest.mark.postgres


async def _pool_pids(engine, n: int) -> set[int]:
    """Check out ``n`` connections at once (so the pool holds ``n``) and return their backend pids."""
    hold = asyncio.Event()
    pids: set[int] = set()

    async def one() -> None:
        async with engine.connect() as conn:
            pids.add((await conn.execute(text("SELECT pg_backend_pid()"))).scalar_one())
            await hold.wait()

    tasks = [asyncio.create_task(one()) for _ in range(n)]
    while len(pids) < n:
        await asyncio.sleep(0.01)
    hold.set()
    await asyncio.gather(*tasks)
    return pids


async def _terminate(dsn: str, pids: set[int]) -> None:
    admin = await asyncpg.connect(dsn)
    try:
        await admin.execute("SELECT pg_terminate_backend(pid) FROM unnest($1::int[]) AS pid", list(pids))
        for _ in range(200):  # until the backends have exited
            if not await admin.fetchval("SELECT count(*) FROM pg_stat_activity WHERE pid = ANY($1::int[])", list(pids)):
                break
            await asyncio.sleep(0.01)
    finally:
        await admin.close()


def _dsn(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://", 1)


@pytest.mark.parametrize("pool_size", [1, 4])
async def test_terminated_backends_do_not_fail_the_next_transactions(postgres_url, pool_size):
    async with scratch_engine(postgres_url, pool_size=pool_size, max_overflow=0) as engine:
        async with engine.begin() as conn:
            await conn.execute(text("CREATE TABLE things (id INTEGER PRIMARY KEY)"))
        old = await _pool_pids(engine, pool_size)
        await _terminate(_dsn(postgres_url), old)
        await asyncio.sleep(0.05)  # the loop reads the servers' goodbye, as it would between requests
        sessions = session_factory(engine)
        new: set[int] = set()
        for i in range(pool_size * 2):  # every pooled connection was dead: each checkout must replace it
            async with transaction(sessions) as session:
                await session.execute(text("INSERT INTO things (id) VALUES (:i)"), {"i": i})
                new.add((await session.execute(text("SELECT pg_backend_pid()"))).scalar_one())
        assert not new & old
        async with engine.connect() as conn:
            assert (await conn.execute(text("SELECT count(*) FROM things"))).scalar_one() == pool_size * 2


async def test_an_idle_connection_is_pinged_and_replaced_when_dead(postgres_url, monkeypatch):
    """The ping path: a connection idle longer than PG_IDLE_PING_S is pinged at checkout; a dead one is replaced."""
    monkeypatch.setattr(engine_module, "PG_IDLE_PING_S", 0.0)
    async with scratch_engine(postgres_url, pool_size=1, max_overflow=0) as engine:
        old = await _pool_pids(engine, 1)
        pinged: list[bool] = []
        real_ping = engine.dialect.do_ping

        def ping(dbapi_connection):
            pinged.append(True)
            return real_ping(dbapi_connection)

        monkeypatch.setattr(engine.dialect, "do_ping", ping)
        async with transaction(session_factory(engine)) as session:
            assert (await session.execute(text("SELECT pg_backend_pid()"))).scalar_one() in old
        assert pinged  # a live idle connection: pinged, kept
        await _terminate(_dsn(postgres_url), old)
        async with transaction(session_factory(engine)) as session:
            assert (await session.execute(text("SELECT pg_backend_pid()"))).scalar_one() not in old
