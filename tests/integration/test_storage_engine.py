"""basis.storage on real engines: SQLite always, PostgreSQL when reachable.

The ``engine`` fixture is parametrised over both backends, so every test here
is the same contract checked on each.
"""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import text

from helpers.things import names, things_engine
from meshkit.basis.errors import Conflict, Unavailable, Unprocessable
from meshkit.basis.storage import create_engine, session_factory, transaction
from meshkit.basis.storage.testing import scratch_engine


@pytest.fixture
async def engine(database_url):
    async with things_engine(database_url) as engine:
        yield engine


async def test_transaction_commits_on_success(engine):
    sessions = session_factory(engine)
    async with transaction(sessions) as session:
        await session.execute(text("INSERT INTO things (id, name) VALUES (1, 'a'), (2, 'b')"))
    assert await names(engine) == ["a", "b"]


async def test_transaction_rolls_back_everything_on_error(engine):
    sessions = session_factory(engine)
    with pytest.raises(RuntimeError):
        async with transaction(sessions) as session:
            await session.execute(text("INSERT INTO things (id, name) VALUES (1, 'a')"))
            raise RuntimeError("boom after the first write")
    assert await names(engine) == []


async def test_unique_violation_is_conflict_naming_the_column_and_nothing_half_written(engine):
    sessions = session_factory(engine)
    async with transaction(sessions) as session:
        await session.execute(text("INSERT INTO things (id, name) VALUES (1, 'a')"))
    with pytest.raises(Conflict) as info:
        async with transaction(sessions) as session:
            await session.execute(text("INSERT INTO things (id, name) VALUES (2, 'b')"))
            await session.execute(text("INSERT INTO things (id, name) VALUES (3, 'a')"))
    assert info.value.reason == "duplicate"
    assert info.value.details["fields"] == ["name"]
    assert info.value.__cause__ is not None  # translated with `from`
    assert await names(engine) == ["a"]  # 'b' went with the failed transaction


@pytest.mark.parametrize("values", [
    "(1, 'a name longer than twenty characters')",  # 22001: too long for VARCHAR(20)
    "(2147483648, 'b')",  # 22003: out of range for INTEGER
    "(3, E'nul\\x00byte')",  # 22021: NUL is no character of a text
])
async def test_a_value_postgresql_refuses_is_unprocessable_and_nothing_half_written(engine, values):
    if engine.dialect.name != "postgresql":
        pytest.skip("SQLite stores these values as they are (no length, range or encoding check)")
    sessions = session_factory(engine)
    with pytest.raises(Unprocessable) as caught:
        async with transaction(sessions) as session:
            await session.execute(text("INSERT INTO things (id, name) VALUES (10, 'kept?')"))
            await session.execute(text(f"INSERT INTO things (id, name) VALUES {values}"))
    assert caught.value.reason == "invalid_value" and caught.value.status == 422
    assert await names(engine) == []


async def test_concurrent_read_modify_write_transactions_serialise(engine):
    # Ten writers each read the counter and write it back + 1 inside one
    # transaction. On SQLite BEGIN IMMEDIATE makes them queue (busy timeout)
    # rather than fail on the lock upgrade; on PostgreSQL FOR UPDATE does.
    sessions = session_factory(engine)
    async with transaction(sessions) as session:
        await session.execute(text("INSERT INTO things (id, name) VALUES (1, '0')"))
    lock = "" if engine.dialect.name == "sqlite" else " FOR UPDATE"

    async def bump() -> None:
        async with transaction(sessions) as session:
            value = (await session.execute(text(f"SELECT name FROM things WHERE id = 1{lock}"))).scalar_one()
            await asyncio.sleep(0.001)
            await session.execute(text("UPDATE things SET name = :v WHERE id = 1"), {"v": str(int(value) + 1)})

    await asyncio.gather(*(bump() for _ in range(10)))
    assert await names(engine) == ["10"]


async def test_sqlite_pragmas(tmp_path):
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path}/p.db")
    try:
        async with engine.connect() as conn:
            got = {
                name: (await conn.execute(text(f"PRAGMA {name}"))).scalar_one()
                for name in ("journal_mode", "foreign_keys", "busy_timeout", "synchronous")
            }
        assert got == {"journal_mode": "wal", "foreign_keys": 1, "busy_timeout": 5000, "synchronous": 1}
    finally:
        await engine.dispose()


async def test_sqlite_foreign_keys_are_enforced(tmp_path):
    async with scratch_engine(f"sqlite+aiosqlite:///{tmp_path}/fk.db") as engine:
        async with engine.begin() as conn:
            await conn.execute(text("CREATE TABLE parent (id INTEGER PRIMARY KEY)"))
            await conn.execute(text("CREATE TABLE child (id INTEGER PRIMARY KEY, pid INTEGER REFERENCES parent(id))"))
        with pytest.raises(Conflict) as info:
            async with transaction(session_factory(engine)) as session:
                await session.execute(text("INSERT INTO child (id, pid) VALUES (1, 42)"))
        assert info.value.reason == "reference"


async def test_unreachable_postgres_is_unavailable():
    engine = create_engine("postgresql+asyncpg://postgres@127.0.0.1:1/nothing", pool_timeout=1)
    try:
        with pytest.raises(Unavailable) as info:
            async with transaction(session_factory(engine)) as session:
                await session.execute(text("SELECT 1"))
        assert "retry" in info.value.message
    finally:
        await engine.dispose()
