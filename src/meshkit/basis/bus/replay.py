"""Reading a stream's stored events from a point on, for rebuilding (:meth:`Bus.replay <meshkit.basis.bus.bus.Bus.replay>`)."""

from __future__ import annotations

import contextlib
import logging

from nats.errors import TimeoutError as NatsTimeout
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig

from meshkit.basis.bus.consumer import Handler, Start, start_policy
from meshkit.basis.bus.envelope import Envelope
from meshkit.basis.bus.streams import stream_for
from meshkit.basis.errors import MeshkitError

logger = logging.getLogger("meshkit.bus")


async def replay_stream(js: JetStreamContext, pattern: str, fn: Handler, *, start: Start = "all",
                        batch: int = 256) -> int:
    """Feed every stored event on ``pattern`` from ``start`` to ``fn``, in order; how many were given.

    An ephemeral consumer without acks reads to the end of the stream as it was when
    called; no durable state is touched. A message that is not an event envelope is
    logged and skipped (the consumers dead-lettered it).
    """
    policy, when = start_policy(start)
    config = ConsumerConfig(filter_subject=pattern, ack_policy=AckPolicy.NONE, deliver_policy=policy,
                            opt_start_time=when, inactive_threshold=30.0)
    sub = await js.pull_subscribe(pattern, stream=stream_for(pattern).name, config=config)
    try:
        pending = (await sub.consumer_info()).num_pending
        read = given = 0
        while read < pending:
            try:
                msgs = await sub.fetch(min(batch, pending - read), timeout=2.0)
            except (NatsTimeout, TimeoutError):
                break
            for msg in msgs:
                read += 1
                try:
                    env = Envelope.from_json(msg.data)
                except MeshkitError as exc:  # one bad message must not make the stream unreplayable
                    logger.warning("replay %s: skipping unreadable message %d: %s", pattern,
                                   msg.metadata.sequence.stream, exc)
                    continue
                env.stream_seq = msg.metadata.sequence.stream
                await fn(env)
                given += 1
        return given
    finally:
        with contextlib.suppress(Exception):
            await sub.unsubscribe()


__all__ = ["replay_stream"]
