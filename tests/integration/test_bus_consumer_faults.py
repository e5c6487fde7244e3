"""Durable consumers on a real NATS under hostile input and hostile handlers.

Poison messages, handlers that raise what is not an ``Exception``, handlers
slower than ``ack_wait`` or hung, and dead letters that fail again after a replay.
"""

from __future__ import annotations

import asyncio
import os
from typing import ClassVar

import orjson
import pytest

from helpers.waiting import until
from meshkit.basis.bus import Bus, Envelope, Event, RetryPolicy, list_dead_letters, replay_dead_letter
from meshkit.basis.errors import Unavailable


class Poked(Event):
    type_name: ClassVar[str] = "faulttest.thing.poked"
    n: int


class Bail(BaseException):
    """A handler's own BaseException (not an Exception)."""


@pytest.fixture
async def bus(nats_server):
    b = Bus(nats_server, source="faulttest")
    b.publishes(Poked)
    await b.connect()
    yield b
    await b.close()


def tag() -> str:
    return os.urandom(3).hex()


async def test_poison_messages_are_dead_lettered_and_the_consumer_keeps_going(bus, nats_server):
    # Before: a "time" that is not a string raised AttributeError out of the decoder, which
    # ended the consumer's loop: nothing after it was ever handled, by this instance.
    t = tag()
    subject = f"faulttest.poison.{t}"
    got: list[int] = []
    consumer = Bus(nats_server, source="faulttest")

    @consumer.handler(subject, durable=f"poison-{t}")
    async def handle(event: Envelope):
        got.append(event.data.n)

    await consumer.start()
    try:
        base = {"specversion": "1.0", "source": "s", "type": "faulttest.thing.poked", "data": {"n": 0}}
        for body in (
            b"\xff\xfe not even utf-8",
            orjson.dumps({**base, "id": f"{t}-1", "time": 1733369000}),
            orjson.dumps({**base, "id": {"oops": 1}}),
            orjson.dumps({**base, "id": f"{t}-3", "data": "not the model"}),
            orjson.dumps({"type": "faulttest.thing.poked"}),
        ):
            await bus.js.publish(subject, body)
        await bus.publish(Poked(n=42), subject=subject)
        await until(lambda: got == [42], 10.0)
        letters = await list_dead_letters(bus.js, consumer=f"poison-{t}")
        assert len(letters) == 5 and all(letter.deliveries == 1 for letter in letters)
        assert all("not a valid event envelope" in x.error or "not JSON" in x.error for x in letters)
    finally:
        await consumer.close()


async def test_a_handler_raising_a_base_exception_is_retried_then_dead_lettered(bus, nats_server):
    # Before: only Exception was caught; the BaseException ended the consumer's loop.
    t = tag()
    subject = f"faulttest.base.{t}"
    got: list[int] = []
    consumer = Bus(nats_server, source="faulttest")

    @consumer.handler(subject, durable=f"base-{t}", retry=RetryPolicy(max_deliveries=2, initial=0.05, jitter=0))
    async def handle(event: Envelope):
        if event.data.n == 1:
            raise Bail("not an Exception")
        if event.data.n == 2:
            raise asyncio.CancelledError()  # its own, not the consumer stopping
        got.append(event.data.n)

    await consumer.start()
    try:
        for n in (1, 2, 3):
            await bus.publish(Poked(n=n), subject=subject)
        await until(lambda: got == [3] and consumer.consumers[0].dead == 2, 10.0)
        letters = await list_dead_letters(bus.js, consumer=f"base-{t}")
        assert sorted(x.error.split(":")[0] for x in letters) == ["Bail", "CancelledError"]
        assert all(x.deliveries == 2 for x in letters)
    finally:
        await consumer.close()


async def test_a_hung_handler_times_out_fails_its_deliveries_and_frees_the_consumer(bus, nats_server):
    # Before: the consumer waited for it forever (and the server redelivered it to the
    # other instances after ack_wait, where it hung too); the event was never dead-lettered.
    t = tag()
    subject = f"faulttest.hang.{t}"
    got: list[int] = []
    consumer = Bus(nats_server, source="faulttest")

    @consumer.handler(subject, durable=f"hang-{t}", ack_wait=1.0,
                      retry=RetryPolicy(max_deliveries=2, initial=0.05, jitter=0))
    async def handle(event: Envelope):
        if event.data.n == 1:
            await asyncio.Event().wait()  # never returns
        if event.data.n == 3:
            raise TimeoutError("the payments call timed out")  # its own: not to be reported as ours
        got.append(event.data.n)

    await consumer.start()
    try:
        for n in (1, 2, 3):
            await bus.publish(Poked(n=n), subject=subject)
        await until(lambda: consumer.consumers[0].dead == 2 and got == [2], 15.0)
        hung, own = sorted(await list_dead_letters(bus.js, consumer=f"hang-{t}"), key=lambda x: x.event["data"]["n"])
        assert hung.deliveries == 2 and hung.error == "TimeoutError: handler took longer than 1s (timeout)"
        assert own.error == "TimeoutError: the payments call timed out"
    finally:
        await consumer.close()


@pytest.mark.timing  # a loop starved for ack_wait (1.5 s) would miss a +WPI
async def test_events_waiting_behind_a_slow_handler_are_not_redelivered_to_another_instance(bus, nats_server):
    # Each event takes 0.4 s, a fetched batch of them longer than ack_wait (1.5 s). Before,
    # the server took the ones still waiting in the first instance's hands for lost and
    # handed them to the second one too: handled twice, at the same time.
    t = tag()
    subject = f"faulttest.slow.{t}"
    calls: list[int] = []
    instances = []
    for _ in range(2):
        inst = Bus(nats_server, source="faulttest")

        async def handle(event: Envelope) -> None:
            calls.append(event.data.n)
            await asyncio.sleep(0.4)

        inst.subscribe(subject, handle, durable=f"slow-{t}", ack_wait=1.5, batch=10)
        instances.append(inst)
    try:
        for n in range(12):
            await bus.publish(Poked(n=n), subject=subject)
        for inst in instances:
            await inst.start()
        await until(lambda: len(set(calls)) == 12, 20.0)
        await asyncio.sleep(2.0)  # longer than ack_wait: a redelivery would have come by now
        assert sorted(calls) == list(range(12))
    finally:
        for inst in instances:
            await inst.close()


async def test_a_replayed_dead_letter_that_fails_again_is_dead_lettered_again(bus, nats_server):
    # Before: the second letter had the first one's Nats-Msg-Id, JetStream dropped it as a
    # duplicate (within its 2-minute window) and the message was terminated: the event was gone.
    t = tag()
    subject = f"faulttest.again.{t}"
    consumer = Bus(nats_server, source="faulttest")

    @consumer.handler(subject, durable=f"again-{t}", retry=RetryPolicy(max_deliveries=2, initial=0.05, jitter=0))
    async def handle(event: Envelope):
        raise LookupError("still broken")

    await consumer.start()
    try:
        await bus.publish(Poked(n=1), subject=subject, id=f"again-{t}")
        await until(lambda: consumer.consumers[0].dead == 1, 10.0)
        [first] = await list_dead_letters(bus.js, consumer=f"again-{t}")
        await replay_dead_letter(bus.js, first.seq)
        await until(lambda: consumer.consumers[0].dead == 2, 10.0)
        letters = await list_dead_letters(bus.js, consumer=f"again-{t}")
        assert [x.event_id for x in letters] == [f"again-{t}"] and letters[0].seq != first.seq
    finally:
        await consumer.close()


async def test_a_replay_skips_unreadable_messages(bus):
    # Before: the first message that was not an envelope raised out of replay(): a stream with
    # one of them could not be replayed (rebuilt from) at all.
    subject = f"faulttest.replay.{tag()}"
    await bus.publish(Poked(n=1), subject=subject)
    await bus.js.publish(subject, b"{broken")
    await bus.publish(Poked(n=2), subject=subject)
    got: list[int] = []

    async def collect(event: Envelope) -> None:
        got.append(event.data.n)

    assert await bus.replay(subject, collect) == 2
    assert got == [1, 2]


async def test_a_handler_whose_pattern_or_ack_wait_changed_updates_its_durable_consumer(bus, nats_server):
    # Before: an existing durable kept the filter and ack_wait it was created with: the events
    # of the subjects the new pattern added never came, and nothing said so.
    t = tag()
    old = Bus(nats_server, source="faulttest")
    old.subscribe(f"faulttest.widen.{t}.a", _ignore, durable=f"widen-{t}", ack_wait=30.0)
    await old.start()
    await old.close()
    got: list[int] = []
    new = Bus(nats_server, source="faulttest")

    @new.handler(f"faulttest.widen.{t}.*", durable=f"widen-{t}", ack_wait=12.0)
    async def handle(event: Envelope) -> None:
        got.append(event.data.n)

    await new.start()
    try:
        await bus.publish(Poked(n=1), subject=f"faulttest.widen.{t}.a")
        await bus.publish(Poked(n=2), subject=f"faulttest.widen.{t}.b")
        await until(lambda: sorted(got) == [1, 2], 10.0)
        info = await bus.js.consumer_info("FAULTTEST", f"widen-{t}")
        assert info.config.filter_subject == f"faulttest.widen.{t}.*" and info.config.ack_wait == 12.0
    finally:
        await new.close()


async def _ignore(event: Envelope) -> None:
    return None


async def test_an_event_too_large_for_its_dead_letter_is_dead_lettered_without_it_and_replays_whole(bus, nats_server):
    # An event a little under max_payload fits in NATS, but not inside a letter with the error
    # and the rest. Before: publishing the letter failed, the message was never terminated, and
    # it came back every ack_wait for good — its handler run again each time.
    t = tag()
    subject = f"faulttest.large.{t}"
    limit = bus.nc.max_payload
    blob = Envelope(type="faulttest.large.blob", source="faulttest", data={"blob": "x" * (limit - 1024)})
    broken = True
    got: list[int] = []
    consumer = Bus(nats_server, source="faulttest")

    @consumer.handler(subject, durable=f"large-{t}", retry=RetryPolicy(max_deliveries=1))
    async def handle(event: Envelope):
        if broken:
            raise ValueError("x" * 2000)  # a long error message, as tracebacks make them
        got.append(len(event.data["blob"]))

    await consumer.start()
    try:
        await bus.publish_envelope(blob, subject=subject)
        await until(lambda: consumer.consumers[0].dead == 1, 10.0)
        [letter] = await list_dead_letters(bus.js, consumer=f"large-{t}")
        assert letter.raw["too_large"] and letter.event is None and letter.event_id == blob.id
        assert letter.deliveries == 1 and letter.error.startswith("ValueError")
        broken = False
        await replay_dead_letter(bus.js, letter.seq)
        await until(lambda: got == [limit - 1024], 10.0)
        assert await list_dead_letters(bus.js, consumer=f"large-{t}") == []
    finally:
        await consumer.close()


async def test_an_unavailable_dependency_is_retried_past_max_deliveries_not_dead_lettered(bus, nats_server):
    # Before: a database outage longer than the retries (about 8 s with the default policy)
    # dead-lettered every event in flight, though none of them was at fault.
    t = tag()
    subject = f"faulttest.away.{t}"
    tries: list[int] = []
    got: list[int] = []
    consumer = Bus(nats_server, source="faulttest")

    @consumer.handler(subject, durable=f"away-{t}",
                      retry=RetryPolicy(max_deliveries=2, initial=0.05, maximum=0.1, jitter=0))
    async def handle(event: Envelope):
        tries.append(event.delivery)
        if event.data.n == 1 and len(tries) < 5:
            raise Unavailable("the database is busy or unreachable; retry shortly")
        if event.data.n == 2:
            raise RuntimeError("the event itself is bad")
        got.append(event.data.n)

    await consumer.start()
    try:
        await bus.publish(Poked(n=1), subject=subject)
        await until(lambda: got == [1], 10.0)
        assert tries == [1, 2, 3, 4, 5]  # past max_deliveries=2, then applied once the dependency was back
        await bus.publish(Poked(n=2), subject=subject)
        await until(lambda: consumer.consumers[0].dead == 1, 10.0)  # a real failure is still dead-lettered
        letters = await list_dead_letters(bus.js, consumer=f"away-{t}")
        assert [x.deliveries for x in letters] == [2] and "the event itself is bad" in letters[0].error
    finally:
        await consumer.close()
