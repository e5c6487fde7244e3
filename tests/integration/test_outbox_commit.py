"""Outbox.add on SQLite and PostgreSQL: the row commits or rolls back with the change, and the relay
is woken once per commit that added events (never for a rolled-back one)."""

from __future__ import annotations

from typing import ClassVar

import pytest
from sqlalchemy import Column, MetaData, String, Table, insert, select

from meshkit.basis.bus import Event
from meshkit.basis.outbox import Outbox
from meshkit.basis.outbox.testing import create_tables
from meshkit.basis.storage import session_factory, transaction
from meshkit.basis.storage.testing import scratch_engine


class Noted(Event):
    type_name: ClassVar[str] = "obcommit.note.noted"
    text: str


_md = MetaData()
notes = Table("obcommit_notes", _md, Column("id", String(20), primary_key=True))


@pytest.fixture
async def engine(database_url):
    async with scratch_engine(database_url) as engine:
        await create_tables(engine, "obcommit", extra=_md)
        yield engine


async def _outbox_rows(engine, outbox: Outbox) -> list[tuple[str, str | None]]:
    t = outbox.table
    async with transaction(session_factory(engine), write=False) as tx:
        return [(r.subject, r.aggregate_id) for r in await tx.execute(select(t).order_by(t.c.seq))]


async def test_events_commit_with_the_change_and_wake_the_relay_once_per_commit(engine):
    sessions = session_factory(engine)
    outbox = Outbox("obcommit", source="obcommit")
    wakes: list[int] = []
    outbox.on_commit(lambda: wakes.append(1))

    async with transaction(sessions) as tx:
        await tx.execute(insert(notes).values(id="n1"))
        env = await outbox.add(tx, Noted(text="one"), aggregate_id="n1")
        await outbox.add(tx, Noted(text="two"), aggregate_id="n1", subject="obcommit.custom")
        assert wakes == []  # not before the commit
    assert len(wakes) == 1  # two events, one commit: one wake
    assert await _outbox_rows(engine, outbox) == [("obcommit.note.noted", "n1"), ("obcommit.custom", "n1")]
    t = outbox.table
    async with transaction(sessions, write=False) as tx:
        body = (await tx.execute(select(t.c.body).where(t.c.event_id == env.id))).scalar_one()
    assert b'"text":"one"' in body

    with pytest.raises(RuntimeError):
        async with transaction(sessions) as tx:
            await tx.execute(insert(notes).values(id="n2"))
            await outbox.add(tx, Noted(text="three"), aggregate_id="n2")
            raise RuntimeError("the change failed")
    assert len(wakes) == 1  # no wake for a rolled-back transaction
    assert len(await _outbox_rows(engine, outbox)) == 2  # and no row

    async with transaction(sessions) as tx:  # a transaction without events wakes nobody
        await tx.execute(insert(notes).values(id="n3"))
    assert len(wakes) == 1
