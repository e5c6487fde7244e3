"""Outbox + relay + inbox + projection on SQLite and PostgreSQL with a real NATS."""

from __future__ import annotations

import asyncio
import os
from typing import ClassVar

import pytest
from sqlalchemy import Column, Integer, MetaData, String, Table, func, insert, select

from meshkit.basis.bus import Bus, Envelope, Event, Retry
from meshkit.basis.inbox import Inbox
from meshkit.basis.natsd import EmbeddedNats
from meshkit.basis.outbox import Outbox, Relay, tables_for
from meshkit.basis.outbox.testing import create_tables
from meshkit.basis.projection import Projection
from meshkit.basis.storage import session_factory, transaction
from meshkit.basis.storage.testing import scratch_engine


class Bumped(Event):
    type_name: ClassVar[str] = "obtest.counter.bumped"
    key: str
    n: int


effects_md = MetaData()
effects = Table(
    "obtest_effects", effects_md,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("event_id", String(64), nullable=False),
    Column("key", String(64), nullable=False),
    Column("n", Integer, nullable=False),
)
copy = Table(
    "obtest_copy", effects_md,
    Column("id", String(64), primary_key=True),
    Column("n", Integer, nullable=False),
    Column("version", Integer, nullable=False),
)


@pytest.fixture
async def db(database_url):
    async with scratch_engine(database_url) as engine:
        await create_tables(engine, "obtest", extra=effects_md)
        yield engine


async def wait_until(cond, timeout: float = 15.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await cond():
        if loop.time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.05)


def tag() -> str:
    return os.urandom(3).hex()


async def count(sessions, table=effects, where=None) -> int:
    async with transaction(sessions, write=False) as s:
        q = select(func.count()).select_from(table)
        if where is not None:
            q = q.where(where)
        return int((await s.execute(q)).scalar_one())


async def test_events_commit_with_the_change_and_reach_an_inbox_consumer_once(db, nats_server):
    sessions = session_factory(db)
    t = tag()
    outbox = Outbox("obtest", source="obtest")
    bus = Bus(nats_server, source="obtest")
    relay = Relay(outbox, sessions, bus, holder="r1", poll=0.05)
    inbox = Inbox(sessions, prefix="obtest", consumer=f"eff-{t}")
    seen: list[tuple[str, int]] = []

    @bus.handler(f"obtest.{t}.>", durable=f"eff-{t}")
    @inbox.handler
    async def apply(event: Envelope, session):
        seen.append((event.data.key, event.data.n))
        await session.execute(insert(effects).values(event_id=event.id, key=event.data.key, n=event.data.n))

    await bus.start()
    await relay.start()
    try:
        # A rolled-back transaction leaves no event behind.
        with pytest.raises(RuntimeError):
            async with transaction(sessions) as s:
                await outbox.add(s, Bumped(key="x", n=0), aggregate_id="x", subject=f"obtest.{t}.bumped")
                raise RuntimeError("the change failed")
        # Interleaved aggregates: each one's events must arrive in order.
        for n in range(20):
            for key in ("a", "b", "c"):
                async with transaction(sessions) as s:
                    await outbox.add(s, Bumped(key=key, n=n), aggregate_id=key, subject=f"obtest.{t}.bumped")

        async def all_applied():
            return await count(sessions, where=effects.c.key.in_(["a", "b", "c"])) >= 60

        await wait_until(all_applied)
        for key in ("a", "b", "c"):
            assert [n for k, n in seen if k == key] == list(range(20))
        assert ("x", 0) not in seen
        assert relay.published == 60

        # The same event delivered again (a replayed publish, new dedup id): no second effect.
        ob = tables_for("obtest").outbox
        async with transaction(sessions, write=False) as s:
            body = (await s.execute(select(ob.c.body).where(ob.c.subject == f"obtest.{t}.bumped").limit(1))).scalar_one()
        await bus.js.publish(f"obtest.{t}.bumped", body, headers={"Nats-Msg-Id": f"again-{t}"})
        await wait_until(lambda: _true_after(inbox))
        assert await count(sessions, where=effects.c.key.in_(["a", "b", "c"])) == 60
        async with transaction(sessions, write=False) as s:
            assert (await s.execute(select(func.count()).select_from(ob).where(ob.c.sent_at.is_(None)))).scalar_one() == 0
    finally:
        await relay.stop()
        await bus.close()


async def _true_after(inbox: Inbox) -> bool:
    return inbox.skipped >= 1


async def test_inbox_retry_rolls_the_claim_back(db, nats_server):
    sessions = session_factory(db)
    inbox = Inbox(sessions, prefix="obtest", consumer=f"retry-{tag()}")
    calls = []

    @inbox.handler
    async def flaky(event: Envelope, session):
        calls.append(event.delivery)
        await session.execute(insert(effects).values(event_id=event.id, key="retry", n=event.delivery))
        return Retry(0.01) if event.delivery == 1 else None

    env = Envelope(type="obtest.counter.bumped", source="t", data={"key": "k", "n": 1})
    assert isinstance(await flaky(env), Retry)
    assert not await inbox.seen(env.id)
    env.delivery = 2
    assert await flaky(env) is None
    env.delivery = 3
    await flaky(env)  # third delivery: skipped
    assert calls == [1, 2] and inbox.skipped == 1
    assert await count(sessions, where=(effects.c.key == "retry") & (effects.c.event_id == env.id)) == 1


async def test_writes_succeed_while_nats_is_down_and_the_backlog_drains(db, tmp_path):
    sessions = session_factory(db)
    server = EmbeddedNats(port=0, data_dir=tmp_path / "nats")
    await server.start()
    port = server.port
    outbox = Outbox("obtest", source="obtest")
    bus = Bus(server.url, source="obtest")
    await bus.connect()
    relay = Relay(outbox, sessions, bus, holder="down", poll=0.05, publish_timeout=0.5)
    await relay.start()
    t = tag()
    try:
        await server.stop()
        for n in range(30):
            async with transaction(sessions) as s:
                await outbox.add(s, Bumped(key="d", n=n), aggregate_id="d", subject=f"obtest.{t}.down")

        async def backlog_full():
            return relay.backlog >= 30

        await wait_until(backlog_full)
        server = EmbeddedNats(port=port, data_dir=tmp_path / "nats")
        await server.start()

        async def drained():
            return relay.backlog == 0 and relay.published >= 30

        await wait_until(drained, timeout=20)
        got: list[int] = []

        async def collect(env: Envelope):
            got.append(env.data.n)

        assert await bus.replay(f"obtest.{t}.down", collect) == 30
        assert got == list(range(30))
    finally:
        await relay.stop()
        await bus.close()
        await server.stop()


async def test_two_relays_one_lease_holder(db, nats_server):
    sessions = session_factory(db)
    outbox = Outbox("obtest", source="obtest")
    bus = Bus(nats_server, source="obtest")
    await bus.connect()
    relays = [Relay(outbox, sessions, bus, holder=h, poll=0.05, lease_ttl=5) for h in ("one", "two")]
    t = tag()
    for r in relays:
        await r.start()
    try:
        for n in range(40):
            async with transaction(sessions) as s:
                await outbox.add(s, Bumped(key="l", n=n), aggregate_id="l", subject=f"obtest.{t}.lease")

        async def done():
            return sum(r.published for r in relays) >= 40

        await wait_until(done)
        await asyncio.sleep(0.3)
        assert sorted(r.published for r in relays) == [0, 40]
        holder = next(r for r in relays if r.published)
        await holder.stop()  # releases the lease: the other takes over at once
        for n in range(40, 50):
            async with transaction(sessions) as s:
                await outbox.add(s, Bumped(key="l", n=n), aggregate_id="l", subject=f"obtest.{t}.lease")

        async def taken_over():
            return sum(r.published for r in relays) >= 50

        await wait_until(taken_over)
        got: list[int] = []

        async def collect(env: Envelope):
            got.append(env.data.n)

        await bus.replay(f"obtest.{t}.lease", collect)
        assert got == list(range(50))
    finally:
        for r in relays:
            await r.stop()
        await bus.close()


async def test_projection_keeps_a_copy_and_rebuilds(db, nats_server):
    sessions = session_factory(db)
    t = tag()
    bus = Bus(nats_server, source="obtest")
    await bus.connect()
    subject = f"obtest.{t}.item"
    for version in (1, 2, 3):
        await bus.publish(Envelope(type=f"obtest.{t}.item.updated", source="x",
                                   data={"id": "i1", "n": version * 10, "version": version}), subject=f"{subject}.updated")
    await bus.publish(Envelope(type=f"obtest.{t}.item.updated", source="x", data={"id": "i2", "n": 5, "version": 1}),
                      subject=f"{subject}.updated")
    await bus.publish(Envelope(type=f"obtest.{t}.item.deleted", source="x", data={"id": "i2", "version": 2}),
                      subject=f"{subject}.deleted")
    from meshkit.basis.projection import copy_applier

    async def reset(session):
        await session.execute(copy.delete())

    proj = Projection(f"copy-{t}", f"{subject}.>", copy_applier(copy, lambda e: dict(e.data)), sessions=sessions,
                      bus=bus, prefix="obtest", holder="p1", reset=reset, lease_ttl=3)

    async def rows():
        async with transaction(sessions, write=False) as s:
            return [tuple(r) for r in (await s.execute(select(copy).order_by(copy.c.id))).all()]

    await proj.start()
    try:
        async def caught_up():
            return await proj.caught_up()

        await wait_until(caught_up)
        assert await rows() == [("i1", 30, 3)]
        checkpoint = await proj.checkpoint()
        assert checkpoint > 0 and proj.applied == 5
        # Rebuild (e.g. after a read-model change): emptied and replayed from the start.
        async with transaction(sessions) as s:
            await s.execute(copy.update().values(n=-1))
        await proj.rebuild()

        async def rebuilt():
            return await rows() == [("i1", 30, 3)] and await proj.checkpoint() == checkpoint

        await wait_until(rebuilt)
        assert proj.applied == 10
    finally:
        await proj.stop()
        await bus.close()
