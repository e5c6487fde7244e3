"""Followers on a real NATS: every process gets every event, the stored ones first; bad ones are skipped."""

from __future__ import annotations

import asyncio
import os
from typing import ClassVar

import pytest

from helpers.waiting import until
from meshkit.basis.bus import Bus, Envelope, Event, StreamSpec
from meshkit.basis.natsd import EmbeddedNats, free_port


class Noted(Event):
    type_name: ClassVar[str] = "followtest.thing.noted"
    n: int


@pytest.fixture
async def subject_and_bus(nats_server):
    tag = os.urandom(3).hex()
    bus = Bus(nats_server, source="followtest")
    bus.publishes(Noted)
    await bus.connect()
    yield f"followtest.thing.{tag}", bus
    await bus.close()


async def test_each_follower_gets_every_event_stored_ones_first_then_live(nats_server, subject_and_bus):
    subject, bus = subject_and_bus
    for n in range(3):
        await bus.publish(Noted(n=n), subject=subject)
    a: list[int] = []
    b: list[int] = []
    other = Bus(nats_server, source="followtest-2")
    await other.connect()
    try:

        async def on_a(env: Envelope) -> None:
            a.append(env.data.n)

        async def on_b(env: Envelope) -> None:
            b.append(env.data.n)

        fa = await bus.follow(subject, on_a)
        fb = await other.follow(subject, on_b)  # another "process": not a share of a's events, all of them
        assert await fa.wait_replayed(5.0) and await fb.wait_replayed(5.0)
        assert a == [0, 1, 2] and b == [0, 1, 2]  # replayed in order before wait_replayed returned
        for n in range(3, 6):
            await bus.publish(Noted(n=n), subject=subject)
        await until(lambda: len(a) == 6 and len(b) == 6, 10.0)
        assert a == b == [0, 1, 2, 3, 4, 5]
        assert subject in bus.follows and fa in bus.followers  # listed for AsyncAPI; stopped by bus.stop()
    finally:
        await other.close()
    assert other.followers == []


async def test_nothing_stored_is_replayed_at_once_and_new_starts_at_the_end(subject_and_bus):
    subject, bus = subject_and_bus
    empty = f"{subject}-empty"
    got: list[int] = []

    async def on(env: Envelope) -> None:
        got.append(env.data.n)

    follower = await bus.follow(empty, on)
    assert follower.replayed.is_set()  # nothing of ours stored: no waiting
    await bus.publish(Noted(n=1), subject=subject)
    late = await bus.follow(subject, on, start="new")
    assert late.replayed.is_set()
    await bus.publish(Noted(n=2), subject=subject)
    await until(lambda: got == [2], 10.0)


async def test_unreadable_messages_and_failing_handlers_are_logged_and_skipped(subject_and_bus, caplog):
    subject, bus = subject_and_bus
    got: list[int] = []

    async def on(env: Envelope) -> None:
        if env.data.n == 13:
            raise ValueError("unlucky")
        got.append(env.data.n)

    follower = await bus.follow(subject, on)
    await bus.js.publish(subject, b"{not json")
    await bus.js.publish(subject, b'{"type": "followtest.thing.noted"}')  # no id, no source
    await bus.publish(Noted(n=13), subject=subject)
    await bus.publish(Noted(n=14), subject=subject)
    await until(lambda: got == [14], 10.0)
    assert follower.skipped == 3 and follower.handled == 1
    messages = " ".join(r.getMessage() for r in caplog.records)
    assert "skipping unreadable message" in messages and "ValueError: unlucky" in messages


class Bail(BaseException):
    """A handler's own BaseException (not an Exception)."""


async def test_a_handler_raising_a_base_exception_or_cancelled_error_is_skipped_and_the_feed_goes_on(subject_and_bus):
    # Before: nats-py's delivery task ended on anything but an Exception, and the follower heard nothing more.
    subject, bus = subject_and_bus
    got: list[int] = []

    async def on(env: Envelope) -> None:
        if env.data.n == 1:
            raise Bail("not an Exception")
        if env.data.n == 2:
            raise asyncio.CancelledError()  # e.g. something it awaited was cancelled: not the follower stopping
        got.append(env.data.n)

    follower = await bus.follow(subject, on)
    for n in (1, 2, 3):
        await bus.publish(Noted(n=n), subject=subject)
    await until(lambda: got == [3], 10.0)
    assert follower.skipped == 2 and follower.handled == 1


async def test_a_follower_start_value_is_checked(subject_and_bus):
    subject, bus = subject_and_bus

    async def on(env: Envelope) -> None: ...

    with pytest.raises(ValueError, match="'all' or 'new'"):
        await bus.follow(subject, on, start="last")  # type: ignore[arg-type]


async def test_a_follower_carries_on_after_the_server_restarts(tmp_path):
    port = free_port()
    server = await EmbeddedNats(port=port, data_dir=tmp_path / "nats").start()
    bus = Bus(server.url, source="followtest", streams=[StreamSpec("FOLLOWTEST", ("followtest.>",))])
    got: list[int] = []
    try:
        await bus.connect()

        async def on(env: Envelope) -> None:
            got.append(env.data.n)

        await bus.publish(Noted(n=1), subject="followtest.thing.r")
        follower = await bus.follow("followtest.thing.r", on, heartbeat=0.5)
        assert await follower.wait_replayed(5.0) and got == [1]
        await server.stop()  # the ephemeral consumer is gone with it
        server = await EmbeddedNats(port=port, data_dir=tmp_path / "nats").start()  # same port and store
        await until(lambda: bus.connected, 10.0)
        await bus.publish(Noted(n=2), subject="followtest.thing.r")
        await until(lambda: got[-1:] == [2], 10.0)  # missed heartbeats: recreated from the last sequence
        assert got == [1, 2]
    finally:
        await bus.close()
        await server.stop()
