"""Outbox, relay and projections at their edges, on SQLite and PostgreSQL with a real NATS:
events too large for NATS."""

from __future__ import annotations

import os
import time
from typing import ClassVar

import pytest
from sqlalchemy import insert

from meshkit.basis.bus import Bus, Envelope, Event
from meshkit.basis.errors import PayloadTooLarge
from meshkit.basis.outbox import Outbox, Relay, tables_for
from meshkit.basis.outbox.testing import create_tables
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


async def test_an_event_too_large_for_nats_holds_back_its_aggregate_only(db, bus):
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
