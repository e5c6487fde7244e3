"""Durable consumers on a real NATS under hostile input and hostile handlers.

Poison messages, handlers that raise what is not an ``Exception``, handlers
slower than ``ack_wait`` or hung, and dead letters that fail again after a replay.
"""

from __future__ import annotations

import os
from typing import ClassVar

import pytest

from helpers.waiting import until
from meshkit.basis.bus import Bus, Envelope, Event, RetryPolicy, list_dead_letters, replay_dead_letter


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
