"""meshkit's aiosqlite driver and SQLite write transactions on a real file: one thread hop per statement, an in-process writer queue."""

from __future__ import annotations

import asyncio
import sqlite3

import aiosqlite.core
import pytest
from sqlalchemy import text

from meshkit.basis.storage import create_engine, session_factory, transaction


@pytest.fixture
async def engine(tmp_path):
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'd.db'}")
    async with engine.begin() as conn:
        await conn.execute(text("CREATE TABLE things (id INTEGER PRIMARY KEY, name VARCHAR(20) NOT NULL UNIQUE)"))
    yield engine
    await engine.dispose()


@pytest.fixture
def hops(monkeypatch):
    """Every call aiosqlite runs on a connection's thread, by function name."""
    seen: list[str] = []
    real = aiosqlite.core.Connection._execute

    async def counted(self, fn, *args, **kwargs):
        seen.append(getattr(fn, "__name__", repr(fn)))
        return await real(self, fn, *args, **kwargs)

    monkeypatch.setattr(aiosqlite.core.Connection, "_execute", counted)
    return seen


async def test_a_write_transaction_is_two_hops_and_an_empty_one_none(engine, hops):
    sessions = session_factory(engine)
    async with transaction(sessions) as session:  # warm the pool: connecting runs its PRAGMAs
        await session.execute(text("INSERT INTO things (id, name) VALUES (1, 'a')"))
    hops.clear()
    async with transaction(sessions) as session:
        await session.execute(text("INSERT INTO things (id, name) VALUES (2, 'b')"))
    assert hops == ["_run", "_end"]  # BEGIN IMMEDIATE + INSERT, then COMMIT; no rollback on return
    hops.clear()
    async with transaction(sessions):
        pass
    assert hops == []
    async with transaction(sessions, write=False) as session:
        names = list((await session.execute(text("SELECT name FROM things ORDER BY id"))).scalars())
    assert names == ["a", "b"]


async def test_a_failed_statement_rolls_back_and_the_connection_stays_usable(engine):
    sessions = session_factory(engine)
    with pytest.raises(Exception):  # noqa: B017 - the unique violation, translated
        async with transaction(sessions) as session:
            await session.execute(text("INSERT INTO things (id, name) VALUES (1, 'a')"))
            await session.execute(text("INSERT INTO things (id, name) VALUES (2, 'a')"))
    async with transaction(sessions) as session:
        await session.execute(text("INSERT INTO things (id, name) VALUES (3, 'c')"))
    async with engine.connect() as conn:
        assert list((await conn.execute(text("SELECT id FROM things"))).scalars()) == [3]


async def test_a_writer_waits_for_a_lock_another_connection_holds(engine, tmp_path):
    """The deferred BEGIN IMMEDIATE still waits for the lock (busy timeout) instead of failing or skipping it."""
    other = sqlite3.connect(tmp_path / "d.db", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    other.execute("INSERT INTO things (id, name) VALUES (1, 'other')")
    sessions = session_factory(engine)

    async def write() -> None:
        async with transaction(sessions) as session:
            await session.execute(text("INSERT INTO things (id, name) VALUES (2, 'mine')"))

    task = asyncio.create_task(write())
    await asyncio.sleep(0.3)
    assert not task.done()  # waiting for the lock
    other.execute("COMMIT")
    other.close()
    await asyncio.wait_for(task, 10)
    async with engine.connect() as conn:
        assert list((await conn.execute(text("SELECT name FROM things ORDER BY id"))).scalars()) == ["other", "mine"]


async def test_concurrent_writers_of_one_process_queue_in_process_and_all_land(engine):
    sessions = session_factory(engine)

    async def writer(k: int) -> None:
        for i in range(10):
            async with transaction(sessions) as session:
                await session.execute(text("INSERT INTO things (id, name) VALUES (:id, :n)"), {"id": k * 100 + i, "n": f"{k}-{i}"})

    await asyncio.gather(*(writer(k) for k in range(8)))
    async with engine.connect() as conn:
        assert (await conn.execute(text("SELECT count(*) FROM things"))).scalar_one() == 80


async def test_the_writer_queue_is_per_database(engine, tmp_path):
    other = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'other.db'}")
    try:
        async with other.begin() as conn:
            await conn.execute(text("CREATE TABLE t (id INTEGER PRIMARY KEY)"))
        async with transaction(session_factory(engine)) as session:  # holds this database's queue ...
            await session.execute(text("INSERT INTO things (id, name) VALUES (1, 'a')"))
            async with asyncio.timeout(2):  # ... and another database's writer does not wait for it
                async with transaction(session_factory(other)) as inner:
                    await inner.execute(text("INSERT INTO t (id) VALUES (1)"))
    finally:
        await other.dispose()


async def test_a_write_transaction_inside_another_on_the_same_database_fails_like_a_locked_database(engine, monkeypatch):
    """It could never get SQLite's lock (its own task holds it): Unavailable after the busy timeout, not a hang."""
    from meshkit.basis import errors
    from meshkit.basis.storage import transactions as session_module

    monkeypatch.setattr(session_module, "SQLITE_BUSY_TIMEOUT_MS", 200)
    sessions = session_factory(engine)
    async with transaction(sessions) as session:
        await session.execute(text("INSERT INTO things (id, name) VALUES (1, 'a')"))
        with pytest.raises(errors.Unavailable):
            async with transaction(sessions):
                pass
    async with transaction(sessions, write=False) as session:  # readers never queue
        async with transaction(sessions, write=False) as inner:
            assert (await inner.execute(text("SELECT count(*) FROM things"))).scalar_one() == 1
