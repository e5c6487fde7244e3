"""The inbox applies a fetched batch in one transaction, and falls back to one transaction per event
when one of them fails or asks for a retry — on SQLite and PostgreSQL with a real NATS."""

from __future__ import annotations

import asyncio
import os
from typing import ClassVar

import pytest
from sqlalchemy import Column, Integer, MetaData, String, Table, func, insert, select

from meshkit.basis import context
from meshkit.basis.bus import Ack, Bus, Envelope, Event, Retry, RetryPolicy, envelope
from meshkit.basis.inbox import Inbox
from meshkit.basis.outbox.testing import create_tables
from meshkit.basis.storage import session_factory, transaction
from meshkit.basis.storage.testing import scratch_engine


class Noted(Event):
    type_name: ClassVar[str] = "ibtest.note.added"
    n: int


md = MetaData()
effects = Table(
    "ibtest_effects", md,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("event_id", String(64), nullable=False),
    Column("n", Integer, nullable=False),
)


@pytest.fixture
async def sessions(database_url):
    async with scratch_engine(database_url) as engine:
        await create_tables(engine, "ibtest", extra=md)
        yield session_factory(engine)


async def effect_rows(sessions) -> list[tuple[str, int]]:
    async with transaction(sessions, write=False) as s:
        return [(r.event_id, r.n) for r in (await s.execute(select(effects.c.event_id, effects.c.n))).all()]


async def test_a_batch_commits_once_and_a_poison_event_does_not_hold_the_others(sessions, nats_server):
    t = os.urandom(3).hex()
    subject = f"ibtest.{t}.added"
    inbox = Inbox(sessions, prefix="ibtest", consumer=f"b-{t}")
    commits: list[int] = []
    inbox.on_commit(lambda events: commits.append(len(events)))
    traces: dict[str, str | None] = {}
    poison, flaky = 7, 13

    @inbox.handler
    async def apply(event: Envelope, session):
        ctx = context.current()
        traces[event.id] = ctx.request_id if ctx is not None else None
        if event.data.n == poison:
            raise RuntimeError("poison")  # every delivery: dead-lettered in the end
        if event.data.n == flaky and event.delivery == 1:
            return Retry(0.05)
        await session.execute(insert(effects).values(event_id=event.id, n=event.data.n))

    consumer = Bus(nats_server, source="ibtest")
    consumer.subscribe(subject, apply, durable=f"b-{t}", batch=64,
                       retry=RetryPolicy(max_deliveries=2, initial=0.05, maximum=0.1))
    producer = await Bus(nats_server, source="ibtest").connect()
    try:
        envs = [envelope(Noted(n=i), source="ibtest") for i in range(40)]
        for env in envs:  # all stored before the consumer starts: it fetches them as one batch
            await producer.publish_envelope(env, subject=subject)
        await producer.js.publish(subject, envs[3].to_json(), headers={"Nats-Msg-Id": f"again-{t}"})
        await consumer.start()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 15
        while len(await effect_rows(sessions)) < 39 or consumer.consumers[0].dead < 1:
            assert loop.time() < deadline, "not all events applied in time"
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.3)  # a late second effect would land now
        rows = await effect_rows(sessions)
        assert sorted(n for _, n in rows) == [n for n in range(40) if n != poison]
        assert len({e for e, _ in rows}) == len(rows)
        assert consumer.consumers[0].dead == 1
        assert inbox.skipped >= 1  # the republished event 3
        assert all(traces[env.id] == env.id for env in envs)  # each event ran in its own context
        assert await inbox.seen(envs[0].id) and not await inbox.seen(envs[poison].id)
        assert sum(commits) == 39  # each applied event reported once, after its commit
    finally:
        await consumer.close()
        await producer.close()


async def test_a_healthy_batch_is_one_transaction(sessions):
    inbox = Inbox(sessions, prefix="ibtest", consumer=f"h-{os.urandom(3).hex()}")
    commits: list[int] = []
    inbox.on_commit(lambda events: commits.append(len(events)))

    @inbox.handler
    async def apply(event: Envelope, session):
        await session.execute(insert(effects).values(event_id=event.id, n=event.data.n))

    envs = [envelope(Noted(n=1000 + i), source="ibtest") for i in range(350)]  # more than one claim chunk
    outcomes = await apply.batch([*envs, envs[0]])
    assert outcomes[:350] == [None] * 350 and outcomes[350] is Ack  # the id twice: the second is a duplicate
    assert commits == [350] and inbox.skipped == 1
    again = await apply.batch(envs[:10])  # redelivered: no second effect, nothing committed to report
    assert again == [Ack] * 10 and commits == [350]
    async with transaction(sessions, write=False) as s:
        assert (await s.execute(select(func.count()).select_from(effects).where(effects.c.n >= 1000))).scalar_one() == 350


async def test_a_retry_in_a_batch_rolls_the_whole_batch_back_then_applies_the_others(sessions):
    inbox = Inbox(sessions, prefix="ibtest", consumer=f"r-{os.urandom(3).hex()}")
    calls: list[int] = []

    @inbox.handler
    async def apply(event: Envelope, session):
        calls.append(event.data.n)
        await session.execute(insert(effects).values(event_id=event.id, n=event.data.n))
        return Retry(0.01) if event.data.n == 2001 else None

    envs = [envelope(Noted(n=2000 + i), source="ibtest") for i in range(3)]
    outcomes = await apply.batch(envs)
    assert outcomes[0] is None and isinstance(outcomes[1], Retry) and outcomes[2] is None
    assert calls == [2000, 2001, 2000, 2001, 2002]  # the batch stopped at the retry, then one by one
    rows = [n for _, n in await effect_rows(sessions) if n >= 2000]
    assert sorted(rows) == [2000, 2002]
    assert not await inbox.seen(envs[1].id)


async def test_event_ids_longer_than_the_column_are_applied_once(sessions):
    # Any string is a CloudEvents id; another publisher's may be longer than the inbox's 64-character
    # column. Before: PostgreSQL refused the claim, so every such event failed until dead-lettered.
    inbox = Inbox(sessions, prefix="ibtest", consumer=f"l-{os.urandom(3).hex()}")

    @inbox.handler
    async def apply(event: Envelope, session):
        await session.execute(insert(effects).values(event_id=event.id[:64], n=event.data.n))

    long_ids = [f"urn:partner:orders:{os.urandom(3).hex()}:" + "x" * 80 + str(i) for i in range(3)]
    envs = [envelope(Noted(n=3000 + i), source="partner", id=i_d) for i, i_d in enumerate(long_ids)]
    assert await apply(envs[0]) is None and await apply(envs[0]) is Ack  # one at a time, then a redelivery
    assert await apply.batch(envs) == [Ack, None, None]
    assert await apply.batch(envs[1:]) == [Ack, Ack]
    assert all([await inbox.seen(i) for i in long_ids])
    assert sorted(n for _, n in await effect_rows(sessions) if n >= 3000) == [3000, 3001, 3002]


async def test_applied_ids_are_forgotten_after_the_retention(sessions):
    # Before: only an explicit purge() forgot them (nothing called it): the inbox grew by every
    # event ever applied.
    inbox = Inbox(sessions, prefix="ibtest", consumer=f"r-{os.urandom(3).hex()}", retention=0.3, purge_every=0.0)

    @inbox.handler
    async def apply(event: Envelope, session):
        await session.execute(insert(effects).values(event_id=event.id, n=event.data.n))

    first, second = envelope(Noted(n=1), source="ibtest"), envelope(Noted(n=2), source="ibtest")
    await apply(first)
    await asyncio.sleep(0.6)
    await apply.batch([second])  # the batch path purges too
    t = inbox.table
    async with transaction(sessions, write=False) as s:
        kept = list((await s.execute(select(t.c.event_id).where(t.c.consumer == inbox.consumer))).scalars())
    assert kept == [second.id]
    assert sorted(n for _, n in await effect_rows(sessions)) == [1, 2]  # effects are never purged
