"""basis.storage.Transaction, what transaction() yields, on real engines (SQLite, then PostgreSQL)."""

from __future__ import annotations

import pytest
from sqlalchemy import insert, select, text
from sqlalchemy.ext.asyncio import async_sessionmaker

from helpers.things import things, things_engine
from meshkit.basis.errors import ConfigError
from meshkit.basis.storage import Transaction, session_factory, transaction


@pytest.fixture
async def engine(database_url):
    async with things_engine(database_url) as engine:
        yield engine


async def test_statements_results_and_what_it_says_about_itself(engine):
    async with transaction(session_factory(engine)) as tx:
        assert isinstance(tx, Transaction)
        assert tx.bind is engine and tx.dialect.name == engine.dialect.name
        await tx.execute(insert(things), [{"id": i, "name": f"n{i}"} for i in range(1, 4)])  # many rows
        assert (await tx.execute(insert(things).values(id=4, name="n4"))).rowcount == 1
        assert await tx.scalar(select(things.c.name).where(things.c.id == 2)) == "n2"
        assert list(await tx.scalars(select(things.c.id).order_by(things.c.id.desc()))) == [4, 3, 2, 1]
        rows = (await tx.execute(text("SELECT id, name FROM things WHERE id > :above ORDER BY id"), {"above": 1})).all()
        assert [(r.id, r.name) for r in rows] == [(2, "n2"), (3, "n3"), (4, "n4")]
        tx.info["mine"] = True  # a dict for the transaction's own use
    async with transaction(engine, write=False) as tx:  # the engine itself works as the factory
        assert await tx.scalar(text("SELECT count(*) FROM things")) == 4
        assert tx.info == {}


async def test_a_factory_without_one_engine_is_a_config_error():
    with pytest.raises(ConfigError, match="session_factory"):
        async with transaction(async_sessionmaker()):
            pass


async def test_the_connection_goes_back_to_the_pool_after_commit_and_rollback(engine):
    pool = engine.sync_engine.pool
    async with transaction(session_factory(engine)) as tx:
        await tx.execute(insert(things).values(id=1, name="a"))
        assert pool.checkedout() == 1
    assert pool.checkedout() == 0
    with pytest.raises(RuntimeError):
        async with transaction(session_factory(engine)) as tx:
            await tx.execute(insert(things).values(id=2, name="b"))
            raise RuntimeError("boom")
    assert pool.checkedout() == 0
    async with transaction(session_factory(engine), write=False) as tx:
        assert list(await tx.scalars(select(things.c.name))) == ["a"]
