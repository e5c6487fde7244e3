"""Outbox → relay → inbox at a light load goes at once; a burst still goes in batches (SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
import os
import statistics
import time
from typing import ClassVar

import pytest
from sqlalchemy import Column, Integer, MetaData, String, Table, insert

from helpers.waiting import until
from meshkit.basis.bus import Bus, Envelope, Event
from meshkit.basis.inbox import Inbox
from meshkit.basis.outbox import Outbox, Relay
from meshkit.basis.outbox.testing import create_tables
from meshkit.basis.storage import session_factory, transaction
from meshkit.basis.storage.testing import scratch_engine


class Ticked(Event):
    type_name: ClassVar[str] = "oblat.clock.ticked"
    n: int
    at: float


md = MetaData()
effects = Table("oblat_effects", md, Column("id", Integer, primary_key=True, autoincrement=True),
                Column("event_id", String(64), nullable=False))


@pytest.fixture
async def pipeline(database_url, nats_server):
    """An outbox with a relay lingering 1 s, and an inbox consumer lingering 1 s: (commit, applied, batches)."""
    t = os.urandom(3).hex()
    async with scratch_engine(database_url) as engine:
        await create_tables(engine, "oblat", extra=md)
        sessions = session_factory(engine)
        outbox = Outbox("oblat", source="oblat")
        bus = Bus(nats_server, source="oblat")
        relay = Relay(outbox, sessions, bus, holder="r1", linger=1.0)
        inbox = Inbox(sessions, prefix="oblat", consumer=f"lat-{t}")
        applied: dict[int, float] = {}
        batches: list[int] = []

        async def apply(event: Envelope, session) -> None:
            await session.execute(insert(effects).values(event_id=event.id))

        def committed(events) -> None:
            now = time.monotonic()
            batches.append(len(events))
            for e in events:
                applied[e.data.n] = now - e.data.at

        inbox.on_commit(committed)
        spec = bus.subscribe(f"oblat.{t}.>", inbox.handler(apply), durable=f"lat-{t}", batch=256)
        spec.linger = 1.0

        async def commit(n: int) -> None:
            async with transaction(sessions) as s:
                await outbox.add(s, Ticked(n=n, at=time.monotonic()), aggregate_id=f"k{n % 4}",
                                 subject=f"oblat.{t}.ticked")

        await bus.start()
        await relay.start()
        try:
            yield commit, applied, batches
        finally:
            await relay.stop()
            await bus.close()


@pytest.mark.timing
async def test_a_light_load_is_applied_at_once_not_after_the_linger(pipeline):
    commit, applied, _ = pipeline
    for n in range(12):  # 20 events a second: far below the eager rate
        await commit(n)
        await asyncio.sleep(0.05)
    await until(lambda: len(applied) == 12, timeout=15)
    # Lingering (1 s in the relay, 1 s in the consumer) would hold most events for
    # hundreds of milliseconds; at this pace each goes through in a few.
    assert statistics.median(applied.values()) < 0.3, sorted(applied.values())


async def test_a_burst_is_published_and_applied_in_batches(pipeline):
    commit, applied, batches = pipeline

    async def writer(k: int) -> None:
        for n in range(k, 400, 8):
            await commit(n)

    await asyncio.gather(*(writer(k) for k in range(8)))
    await until(lambda: len(applied) == 400, timeout=30)
    assert len(batches) < 100, batches  # one inbox transaction for many events, not one each
