"""basis.storage.Prepared and after_commit on real engines (SQLite, then PostgreSQL).

A prepared statement goes to the driver on the transaction's own connection: it
commits and rolls back with the statements around it, errors are translated as
``session.execute``'s are, and callbacks given to ``after_commit`` run after a
commit only.
"""

from __future__ import annotations

import pytest
from sqlalchemy import bindparam, insert, text, update

from helpers.things import names, things, things_engine
from meshkit.basis.errors import Conflict
from meshkit.basis.storage import Prepared, after_commit, session_factory, transaction
from meshkit.basis.storage import prepared as prepared_module

add_thing = Prepared(insert(things), ("id", "name"))
suffix = Prepared(
    update(things).where(things.c.id > bindparam("above")).values(name=things.c.name + bindparam("suffix")),
    ("suffix", "above"),
)


@pytest.fixture
async def engine(database_url):
    async with things_engine(database_url) as engine:
        yield engine


async def test_commits_with_the_other_statements_of_the_transaction(engine):
    sessions = session_factory(engine)
    async with transaction(sessions) as session:
        await session.execute(insert(things).values(id=1, name="a"))
        assert await add_thing.run(session, (2, "b")) == 1
        # the statement after it sees its row: same connection, same transaction
        assert (await session.execute(text("SELECT count(*) FROM things"))).scalar_one() == 2
    assert await names(engine) == ["a", "b"]


async def test_rolls_back_with_the_transaction(engine):
    sessions = session_factory(engine)
    with pytest.raises(RuntimeError):
        async with transaction(sessions) as session:
            await add_thing.run(session, (1, "a"))  # the first statement: it opens the transaction
            await session.execute(insert(things).values(id=2, name="b"))
            raise RuntimeError("boom")
    assert await names(engine) == []


async def test_rowcount_of_an_update(engine):
    sessions = session_factory(engine)
    async with transaction(sessions) as session:
        assert await suffix.run(session, ("!", 1)) == 0
        for i, name in enumerate("abc", 1):
            await add_thing.run(session, (i, name))
        assert await suffix.run(session, ("!", 1)) == 2
    assert await names(engine) == ["a", "b!", "c!"]


async def test_without_the_asyncpg_shortcut_the_same_statements_go_through_execute(engine, monkeypatch):
    # What a SQLAlchemy release without the adapter's private members gets (ASYNCPG_DIRECT false).
    monkeypatch.setattr(prepared_module, "ASYNCPG_DIRECT", False)
    sessions = session_factory(engine)
    async with transaction(sessions) as session:
        for i, name in enumerate("abc", 1):
            assert await add_thing.run(session, (i, name)) == 1
        assert await suffix.run(session, ("!", 1)) == 2
    assert await names(engine) == ["a", "b!", "c!"]
    with pytest.raises(Conflict):
        async with transaction(sessions) as session:
            await add_thing.run(session, (4, "a"))
    assert await names(engine) == ["a", "b!", "c!"]


async def test_a_unique_violation_is_a_conflict_and_nothing_is_half_written(engine):
    sessions = session_factory(engine)
    async with transaction(sessions) as session:
        await add_thing.run(session, (1, "a"))
    with pytest.raises(Conflict) as info:
        async with transaction(sessions) as session:
            await add_thing.run(session, (2, "b"))
            await add_thing.run(session, (3, "a"))
    assert info.value.reason == "duplicate"
    assert info.value.details["fields"] == ["name"]
    assert await names(engine) == ["a"]
    async with transaction(sessions) as session:  # the pooled connection is usable afterwards
        await add_thing.run(session, (2, "b"))
    assert await names(engine) == ["a", "b"]


async def test_outside_transaction_blocks_it_opens_the_session_transaction(engine):
    async with session_factory(engine)() as session:
        await add_thing.run(session, (1, "a"))
        await session.rollback()
        await add_thing.run(session, (2, "b"))
        await session.commit()
    assert await names(engine) == ["b"]


def test_binds_must_be_the_columns_in_order(engine):
    with pytest.raises(ValueError, match="not the columns"):
        Prepared(insert(things), ("name", "id")).sql(engine.dialect)


async def test_after_commit_runs_once_after_the_commit_and_never_after_a_rollback(engine):
    sessions = session_factory(engine)
    calls: list[str] = []

    def committed() -> None:
        calls.append("committed")

    async with transaction(sessions) as session:
        await add_thing.run(session, (1, "a"))
        after_commit(session, committed)
        after_commit(session, committed)  # once per transaction, however often it is asked for
        assert calls == []
    assert calls == ["committed"]

    with pytest.raises(RuntimeError):
        async with transaction(sessions) as session:
            after_commit(session, committed)
            raise RuntimeError("boom")
    assert calls == ["committed"]

    async with session_factory(engine)() as session:  # one session, two transactions
        after_commit(session, committed)
        await add_thing.run(session, (2, "b"))
        await session.rollback()
        await add_thing.run(session, (3, "c"))
        await session.commit()  # the callback went with the rolled-back transaction
        assert calls == ["committed"]
        after_commit(session, committed)
        await session.commit()
    assert calls == ["committed", "committed"]
