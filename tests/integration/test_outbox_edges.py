"""Outbox, relay and projections at their edges, on SQLite and PostgreSQL with a real NATS:
events too large for NATS, poison messages in a projection's stream, a rebuild racing a batch."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from typing import ClassVar

import pytest
from sqlalchemy import Column, Integer, MetaData, String, Table, delete, insert, select

from meshkit.basis.bus import Bus, Envelope, Event, list_dead_letters, replay_dead_letter
from meshkit.basis.errors import PayloadTooLarge, Unavailable
from meshkit.basis.outbox import Outbox, Relay, tables_for
from meshkit.basis.outbox.testing import create_tables
from meshkit.basis.projection import Projection
from meshkit.basis.storage import session_factory, transaction
from meshkit.basis.storage.testing import scratch_engine


class Noted(Event):
    type_name: ClassVar[str] = "edgetest.note.added"
    text: str


@pytest.fixture
async def db(database_url):
    async with scratch_engine(database_url) as engine:
        await create_tables(engine, "edgetest")
        yield engine


@pytest.fixture
async def bus(nats_server):
    b = Bus(nats_server, source="edgetest")
    await b.connect()
    yield b
    await b.close()


def tag() -> str:
    return os.urandom(3).hex()


async def texts(bus: Bus, subject: str) -> list[str]:
    got: list[str] = []

    async def collect(env: Envelope) -> None:
        got.append(env.data.text)

    await bus.replay(subject, collect)
    return got


async def test_an_event_too_large_for_nats_holds_back_its_aggregate_only(db, bus, caplog):
    # Before: the relay stopped each wave at the first event it could not publish, and the
    # oldest unsent event comes first in every round: one oversized row stopped every aggregate.
    sessions = session_factory(db)
    t = tag()
    subject = f"edgetest.{t}.note"
    outbox = Outbox("edgetest", source="edgetest")
    huge = Envelope(type="edgetest.note.added", source="edgetest", data={"text": "x" * (2 * 1024 * 1024)})
    async with transaction(sessions) as s:  # as an older version, without the size check, stored it
        await s.execute(insert(tables_for("edgetest").outbox).values(
            event_id=huge.id, subject=subject, aggregate_id="big", body=huge.to_json(), created_at=time.time()))
        await outbox.add(s, Noted(text="big-2"), aggregate_id="big", subject=subject)
        for key in ("a", "b"):
            await outbox.add(s, Noted(text=f"{key}-1"), aggregate_id=key, subject=subject)
            await outbox.add(s, Noted(text=f"{key}-2"), aggregate_id=key, subject=subject)
    relay = Relay(outbox, sessions, bus, holder="h")
    assert await relay.run_once() == 4
    assert "wait behind it" in caplog.text  # said even in a round that published the others
    with pytest.raises(PayloadTooLarge):  # nothing else to send: the round fails (logged, retried with backoff)
        await relay.run_once()
    assert sorted(await texts(bus, subject)) == ["a-1", "a-2", "b-1", "b-2"]  # big-2 waits behind the huge one
    await relay._count_backlog()
    assert relay.backlog == 2


async def test_the_outbox_refuses_an_event_nats_could_never_take(db):
    sessions = session_factory(db)
    outbox = Outbox("edgetest", source="edgetest")
    with pytest.raises(PayloadTooLarge) as info:
        async with transaction(sessions) as s:
            await outbox.add(s, Noted(text="x" * (1024 * 1024)), aggregate_id="big")
    assert info.value.reason == "event_too_large" and info.value.details["limit"] == outbox.max_body
    small = Outbox("edgetest", source="edgetest", max_body=400)
    async with transaction(sessions) as s:
        await small.add(s, Noted(text="fits"))
    with pytest.raises(PayloadTooLarge):
        async with transaction(sessions) as s:
            await small.add(s, Noted(text="y" * 400))


async def test_a_poison_message_in_a_projection_stream_is_dead_lettered_and_skipped(db, bus):
    # Before: the projection could not decode it, dropped its consumer, came back to the same
    # position and failed again, forever: nothing after the poison message was ever applied.
    sessions = session_factory(db)
    t = tag()
    subject = f"edgetest.{t}.proj"
    await bus.ensure_for(subject)
    seen: list[str] = []

    async def apply(env: Envelope, session) -> None:
        seen.append(env.data.text)

    await bus.publish(Noted(text="one"), subject=subject)
    await bus.js.publish(subject, b"{not an envelope")
    await bus.publish(Noted(text="two"), subject=subject)
    await bus.js.publish(subject, b'{"id": "x", "source": "s", "type": "edgetest.note.added", "time": 5}')
    projection = Projection(f"poison-{t}", subject, apply, sessions=sessions, bus=bus, prefix="edgetest", holder="h")
    try:
        for _ in range(5):
            await projection.run_once(wait=0.5)
        assert seen == ["one", "two"]
        assert await projection.caught_up()  # the checkpoint is past the last (poison) message
        letters = await list_dead_letters(bus.js, consumer=projection.durable)
        assert len(letters) == 2 and all(x.event is None and x.raw["raw"] for x in letters)
    finally:
        await projection.stop()


async def test_a_failing_projection_event_is_dead_lettered_with_the_subject_it_came_on(db, bus):
    # Before: the letter named the event's type as its subject; events published on a subject of
    # their own (Outbox.add(subject=...)) were replayed to the type's subject, past the projection.
    sessions = session_factory(db)
    t = tag()
    subject = f"edgetest.{t}.custom"
    await bus.ensure_for(subject)
    broken = True
    seen: list[str] = []

    async def apply(env: Envelope, session) -> None:
        if broken and env.data.text == "bad":
            raise ValueError("cannot apply")
        seen.append(env.data.text)

    await bus.publish(Noted(text="bad"), subject=subject)
    projection = Projection(f"subj-{t}", subject, apply, sessions=sessions, bus=bus, prefix="edgetest",
                            holder="h", max_failures=2)
    try:
        for _ in range(3):
            with contextlib.suppress(ValueError):
                await projection.run_once(wait=0.5)
        [letter] = await list_dead_letters(bus.js, consumer=projection.durable)
        assert letter.subject == subject and letter.event_id
        broken = False
        await replay_dead_letter(bus.js, letter.seq)
        for _ in range(3):
            await projection.run_once(wait=0.5)
        assert seen == ["bad"]
    finally:
        await projection.stop()

async def test_an_unavailable_database_never_gets_an_event_dead_lettered_or_skipped(db, bus):
    # Before: max_failures rounds failing on an unavailable database (or whatever apply needs)
    # made the projection dead-letter the first event of the batch and move its checkpoint past it.
    sessions = session_factory(db)
    t = tag()
    subject = f"edgetest.{t}.down"
    await bus.ensure_for(subject)
    outage = 7
    seen: list[str] = []

    async def apply(env: Envelope, session) -> None:
        nonlocal outage
        if outage:
            outage -= 1
            raise Unavailable("the database is busy or unreachable; retry shortly", reason="database_unavailable")
        seen.append(env.data.text)

    await bus.publish(Noted(text="innocent"), subject=subject)
    projection = Projection(f"down-{t}", subject, apply, sessions=sessions, bus=bus, prefix="edgetest",
                            holder="h", max_failures=2)
    try:
        for _ in range(10):
            with contextlib.suppress(Unavailable):
                await projection.run_once(wait=0.5)
        assert seen == ["innocent"]
        assert await list_dead_letters(bus.js, consumer=projection.durable) == []
    finally:
        await projection.stop()

notes_md = MetaData()
notes = Table("edgetest_notes", notes_md, Column("id", Integer, primary_key=True, autoincrement=True),
              Column("text", String(50), nullable=False))


async def test_a_rebuild_racing_a_batch_loses_no_events_on_postgresql(postgres_url, bus):
    # Before: the batch read the checkpoint without a lock and overwrote it at its end. A rebuild
    # committed meanwhile (read model emptied, checkpoint 0) was undone by the batch's write: the
    # read model kept only that batch's rows, the checkpoint said everything before was applied.
    t = tag()
    subject = f"edgetest.{t}.rebuild"
    await bus.ensure_for(subject)
    gate, entered = asyncio.Event(), asyncio.Event()

    async def apply(env: Envelope, session) -> None:
        if env.data.text == "e4" and not gate.is_set():
            entered.set()
            await gate.wait()  # a batch in flight, its transaction open
        await session.execute(insert(notes).values(text=env.data.text))

    async def reset(session) -> None:
        await session.execute(delete(notes))

    async with scratch_engine(postgres_url) as engine:
        await create_tables(engine, "edgetest", extra=notes_md)
        sessions = session_factory(engine)
        projection = Projection(f"race-{t}", subject, apply, sessions=sessions, bus=bus, prefix="edgetest",
                                holder="h", reset=reset)
        try:
            for n in (1, 2, 3):
                await bus.publish(Noted(text=f"e{n}"), subject=subject)
            assert await projection.run_once(wait=1.0) == 3
            await bus.publish(Noted(text="e4"), subject=subject)
            batch = asyncio.create_task(projection.run_once(wait=2.0))
            await asyncio.wait_for(entered.wait(), 5.0)
            rebuild = asyncio.create_task(projection.rebuild())
            await asyncio.sleep(0.5)  # the rebuild commits now (before), or waits for the batch (now)
            gate.set()
            await batch
            await rebuild
            for _ in range(4):
                await projection.run_once(wait=0.3)
            async with transaction(sessions, write=False) as s:
                rows = sorted((await s.execute(select(notes.c.text))).scalars())
            assert rows == ["e1", "e2", "e3", "e4"]
            assert await projection.caught_up()
        finally:
            await projection.stop()


async def test_sent_rows_are_purged_while_events_keep_coming(db, bus):
    # Before: sent rows were purged only in a round that found nothing to send, so a service
    # that never went quiet kept every event it ever published.
    sessions = session_factory(db)
    subject = f"edgetest.{tag()}.note"
    outbox = Outbox("edgetest", source="edgetest")
    relay = Relay(outbox, sessions, bus, holder="h", retention=0.0, purge_every=0.0)
    for i in range(3):
        async with transaction(sessions) as s:
            await outbox.add(s, Noted(text=f"n{i}"), aggregate_id="a", subject=subject)
        assert await relay.run_once() == 1  # every round has something to send
    ob = tables_for("edgetest").outbox
    async with transaction(sessions, write=False) as s:
        left = list((await s.execute(select(ob.c.sent_at))).scalars())
    assert len(left) == 1 and left[0] is not None  # the last round's row; the earlier sent ones are gone
    assert await texts(bus, subject) == ["n0", "n1", "n2"]
