"""The bus on a real NATS: publish/consume, shared durables, retries, dead letters, replay, trace context."""

from __future__ import annotations

import asyncio
import os
from typing import ClassVar

import pytest

from meshkit.basis import context
from meshkit.basis.bus import (
    Bus,
    Drop,
    Envelope,
    Event,
    Retry,
    RetryPolicy,
    get_dead_letter,
    list_dead_letters,
    replay_dead_letter,
)
from meshkit.basis.errors import NotFound, Unavailable


class ThingMade(Event):
    type_name: ClassVar[str] = "bustest.thing.made"
    n: int


def unique() -> str:
    return os.urandom(3).hex()


async def wait_until(cond, timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not cond():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)


@pytest.fixture
async def bus(nats_server):
    b = Bus(nats_server, source="bustest")
    b.publishes(ThingMade)
    await b.connect()
    yield b
    await b.close()


async def test_publish_is_deduplicated_by_event_id_and_typed_on_receipt(bus, nats_server):
    tag = unique()
    got: list[Envelope] = []
    consumer = Bus(nats_server, source="bustest")

    @consumer.handler(f"bustest.thing.{tag}", durable=f"dedup-{tag}")
    async def on_thing(event: Envelope):
        got.append(event)

    await consumer.start()
    try:
        a1 = await bus.publish(ThingMade(n=1), subject=f"bustest.thing.{tag}", id=f"id-{tag}")
        a2 = await bus.publish(ThingMade(n=1), subject=f"bustest.thing.{tag}", id=f"id-{tag}")
        assert a2.duplicate and not a1.duplicate
        await wait_until(lambda: len(got) == 1)
        await asyncio.sleep(0.2)
        assert len(got) == 1
        env = got[0]
        assert isinstance(env.data, ThingMade) and env.data.n == 1
        assert env.id == f"id-{tag}" and env.source == "bustest" and env.type == "bustest.thing.made"
        assert env.specversion == "1.0" and env.datacontenttype == "application/json"
        assert env.delivery == 1 and env.stream_seq > 0
    finally:
        await consumer.close()


async def test_instances_sharing_a_durable_split_the_events(bus, nats_server):
    tag = unique()
    seen: dict[str, list[int]] = {"a": [], "b": []}
    instances = []
    for name in ("a", "b"):
        inst = Bus(nats_server, source="bustest")

        async def handle(event: Envelope, name=name):
            seen[name].append(event.data.n)
            await asyncio.sleep(0.002)

        inst.subscribe(f"bustest.share.{tag}", handle, durable=f"share-{tag}", batch=5)
        await inst.start()
        instances.append(inst)
    try:
        for i in range(100):
            await bus.publish(ThingMade(n=i), subject=f"bustest.share.{tag}")
        await wait_until(lambda: len(seen["a"]) + len(seen["b"]) >= 100)
        await asyncio.sleep(0.2)
        assert sorted(seen["a"] + seen["b"]) == list(range(100))  # each once, none twice
        assert seen["a"] and seen["b"]  # both instances took part
    finally:
        for inst in instances:
            await inst.close()


async def test_trace_context_flows_from_publisher_to_handler(bus, nats_server):
    tag = unique()
    got: list[tuple[str, str | None]] = []
    consumer = Bus(nats_server, source="bustest")

    @consumer.handler(f"bustest.trace.{tag}", durable=f"trace-{tag}")
    async def on_thing(event: Envelope):
        ctx = context.current()
        got.append((ctx.trace_id, ctx.request_id))

    await consumer.start()
    ctx = context.RequestContext()
    token = context.bind(ctx)
    try:
        ack = await bus.publish(ThingMade(n=1), subject=f"bustest.trace.{tag}", id=f"trace{tag}")
    finally:
        context.reset(token)
    try:
        await wait_until(lambda: got)
        assert got[0] == (ctx.trace_id, f"trace{tag}")
        assert ack.seq > 0
    finally:
        await consumer.close()


async def test_exceptions_retry_with_backoff_then_dead_letter(bus, nats_server):
    tag = unique()
    deliveries: list[int] = []
    consumer = Bus(nats_server, source="bustest")

    @consumer.handler(f"bustest.fail.{tag}", durable=f"fail-{tag}",
                      retry=RetryPolicy(max_deliveries=3, initial=0.05, jitter=0))
    async def always_fails(event: Envelope):
        deliveries.append(event.delivery)
        raise ValueError("cannot handle this")

    await consumer.start()
    try:
        await bus.publish(ThingMade(n=7), subject=f"bustest.fail.{tag}", id=f"dead-{tag}")
        await wait_until(lambda: consumer.consumers[0].dead == 1)
        assert deliveries == [1, 2, 3]
        letters = await list_dead_letters(bus.js, consumer=f"fail-{tag}")
        assert len(letters) == 1
        letter = letters[0]
        assert letter.deliveries == 3 and "ValueError: cannot handle this" in letter.error
        assert letter.event_id == f"dead-{tag}" and letter.event["data"] == {"n": 7}
        assert letter.subject == f"bustest.fail.{tag}"
        assert (await get_dead_letter(bus.js, letter.seq)).event_id == f"dead-{tag}"
    finally:
        await consumer.close()

    # Replay: the fixed handler gets the original event back; the letter is gone.
    fixed: list[Envelope] = []
    again = Bus(nats_server, source="bustest")

    @again.handler(f"bustest.fail.{tag}", durable=f"fail-{tag}")
    async def now_works(event: Envelope):
        fixed.append(event)

    await again.start()
    try:
        await replay_dead_letter(bus.js, letter.seq)
        await wait_until(lambda: fixed)
        assert fixed[0].id == f"dead-{tag}" and fixed[0].data.n == 7
        with pytest.raises(NotFound):
            await get_dead_letter(bus.js, letter.seq)
    finally:
        await again.close()


async def test_retry_and_drop_signals(bus, nats_server):
    tag = unique()
    calls: list[tuple[int, int]] = []
    consumer = Bus(nats_server, source="bustest")

    @consumer.handler(f"bustest.sig.{tag}", durable=f"sig-{tag}", retry=RetryPolicy(max_deliveries=5))
    async def picky(event: Envelope):
        calls.append((event.data.n, event.delivery))
        if event.data.n == 1 and event.delivery < 3:
            return Retry(0.05)
        if event.data.n == 2:
            return Drop
        return None

    await consumer.start()
    try:
        await bus.publish(ThingMade(n=1), subject=f"bustest.sig.{tag}")
        await bus.publish(ThingMade(n=2), subject=f"bustest.sig.{tag}")
        await wait_until(lambda: (1, 3) in calls)
        await asyncio.sleep(0.3)
        assert sorted(calls) == [(1, 1), (1, 2), (1, 3), (2, 1)]
        assert consumer.consumers[0].dead == 0
    finally:
        await consumer.close()


async def test_replay_from_start_and_from_a_time(bus):
    tag = unique()
    subject = f"bustest.replay.{tag}"
    for i in range(5):
        await bus.publish(ThingMade(n=i), subject=subject)
    await asyncio.sleep(0.05)
    from datetime import UTC, datetime

    middle = datetime.now(UTC)
    await asyncio.sleep(0.05)
    for i in range(5, 8):
        await bus.publish(ThingMade(n=i), subject=subject)
    everything: list[int] = []
    later: list[int] = []

    async def collect_all(env: Envelope):
        everything.append(env.data.n)

    async def collect_later(env: Envelope):
        later.append(env.data.n)

    assert await bus.replay(subject, collect_all) == 8
    assert everything == list(range(8))
    assert await bus.replay(subject, collect_later, start=middle) == 3
    assert later == [5, 6, 7]


async def test_publishing_on_a_closed_connection_is_unavailable(nats_server):
    # Before: only a timeout became Unavailable; nats-py's ConnectionClosedError (and its other
    # ways of saying "not now") came out raw, and an endpoint publishing answered 500, not 503.
    b = Bus(nats_server, source="bustest")
    b.publishes(ThingMade)
    await b.connect()
    await b.publish(ThingMade(n=1), subject=f"bustest.closed.{unique()}")
    await b.nc.close()
    with pytest.raises(Unavailable) as caught:
        await b.publish(ThingMade(n=2), subject=f"bustest.closed.{unique()}")
    assert caught.value.status == 503 and caught.value.reason == "bus_unavailable"
    await b.close()
