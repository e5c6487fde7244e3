"""Followers: every process sees every event of a subject — the stored ones first, then each new one.

A handler (:meth:`~meshkit.basis.bus.Bus.handler`) is a durable consumer that a
service's instances share, so each event reaches one of them. Some events every
process must see itself: a token revocation has to reach every gateway's and
every SSO instance's in-memory list. A follower is a consumer of the process's
own — ordered, ephemeral, in memory on the server, no acks — that starts at the
beginning of the stream (``start="all"``; the stream's retention says how far
back that is) or at its end (``"new"``), delivers in stream order, and recreates
itself from the last sequence it handled after a gap or when the server lost it
(missed heartbeats, e.g. a NATS restart)::

    follower = await follow(bus.js, "sso.token.revoked", on_revoked, stream="SSO")
    await follower.wait_replayed(5.0)      # the events stored when it started are handled
    ...
    await follower.stop()

A message that is not an event envelope, and a handler that raises (any
exception but a stop of the process, see :func:`~meshkit.basis.bus.consumer.is_failure`),
are logged and skipped: a follower cannot retry (nothing is acknowledged), and one bad
message must not stop the feed. Handlers are therefore idempotent and quick
(an event can come twice after a recreation).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Literal

from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import DeliverPolicy

from meshkit.basis.bus.envelope import Envelope
from meshkit.basis.bus.handling import event_context, is_failure
from meshkit.basis.bus.streams import stream_for
from meshkit.basis.errors import MeshkitError

logger = logging.getLogger("meshkit.bus")

#: What a follower calls for each event (its outcome is ignored: there is nothing to acknowledge).
FollowHandler = Callable[[Envelope], Awaitable[object]]
#: Seconds between the server's heartbeats; two missed ones make the follower recreate its consumer.
HEARTBEAT = 2.0


class Follower:
    """One process's ordered view of ``pattern`` on ``stream``; see :func:`follow`."""

    def __init__(self, pattern: str, fn: FollowHandler, *, stream: str, name: str = "",
                 heartbeat: float = HEARTBEAT) -> None:
        self.pattern = pattern
        self.heartbeat = heartbeat
        self.fn = fn
        self.stream = stream
        self.name = name or pattern
        #: Set once every event stored when the follower started has been handled (or skipped).
        self.replayed = asyncio.Event()
        self.handled = 0
        self.skipped = 0
        self.last_seq = 0
        self._until = 0  # the stream's last sequence when we started: the replay ends there
        self._received = 0  # messages the callback saw (handled or skipped)
        self._sub: Any = None

    async def start(self, js: JetStreamContext, *, start: Literal["all", "new"] = "all") -> Follower:
        """Create the ordered consumer and start handling; returns at once (see :meth:`wait_replayed`)."""
        if start not in ("all", "new"):
            raise ValueError(f"a follower starts at 'all' or 'new', not {start!r}")
        if start == "new":
            self.replayed.set()
        else:
            self._until = (await js.stream_info(self.stream)).state.last_seq
            if self._until == 0:
                self.replayed.set()  # an empty stream: nothing to replay
        policy = DeliverPolicy.ALL if start == "all" else DeliverPolicy.NEW
        self._sub = await js.subscribe(self.pattern, stream=self.stream, cb=self._on_message, ordered_consumer=True,
                                       deliver_policy=policy, idle_heartbeat=self.heartbeat)
        if not self.replayed.is_set():
            # Nothing pending and every delivered message handled: done (nothing of ours was stored, or
            # all of it came already). Otherwise the last one delivered says num_pending == 0 when handled.
            # (Compare counts, not stream sequences: delivered.stream_seq moves past other subjects' messages.)
            info = await self._sub.consumer_info()
            if info.num_pending == 0 and info.delivered.consumer_seq <= self._received:
                self.replayed.set()
        return self

    async def wait_replayed(self, timeout: float | None = None) -> bool:
        """Wait until the stored events are handled; ``False`` if ``timeout`` passed first."""
        try:
            async with asyncio.timeout(timeout):
                await self.replayed.wait()
        except TimeoutError:
            return False
        return True

    async def _on_message(self, msg: Msg) -> None:
        self._received += 1
        meta = msg.metadata
        seq = meta.sequence.stream
        try:
            env = Envelope.from_json(msg.data)
        except MeshkitError as exc:
            self.skipped += 1
            logger.warning("follower %s: skipping unreadable message %d on %s: %s", self.name, seq, msg.subject,
                           getattr(exc, "message", exc))
        else:
            env.stream_seq = seq
            with event_context(env):
                try:
                    await self.fn(env)
                    self.handled += 1
                except BaseException as exc:  # not only Exception: nats-py's feed ends on any other
                    if not is_failure(exc):
                        raise
                    self.skipped += 1
                    logger.warning("follower %s: skipping event %s (%s, message %d): %s: %s", self.name, env.id,
                                   env.type, seq, type(exc).__name__, exc)
        self.last_seq = max(self.last_seq, seq)
        if not self.replayed.is_set() and (meta.num_pending == 0 or seq >= self._until):
            self.replayed.set()

    async def stop(self) -> None:
        """Stop receiving (the server drops the ephemeral consumer)."""
        sub, self._sub = self._sub, None
        if sub is None:
            return
        try:
            await sub.unsubscribe()
        except Exception:  # connection closed or draining: stop nats-py's helper tasks ourselves
            jsi = getattr(getattr(sub, "_sub", None), "_jsi", None)
            for task in (getattr(jsi, "_hbtask", None), getattr(jsi, "_fctask", None)):
                if task is not None:
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await task


async def follow(
    js: JetStreamContext,
    pattern: str,
    fn: FollowHandler,
    *,
    stream: str | None = None,
    start: Literal["all", "new"] = "all",
    name: str = "",
    heartbeat: float = HEARTBEAT,
) -> Follower:
    """Start a :class:`Follower` of ``pattern`` (NATS wildcards) calling ``fn`` for every event, in order.

    ``stream`` defaults to the stream of ``pattern``'s bounded context; it must
    exist (whoever owns it ensures it, with its retention). Returns once the
    consumer exists; ``await follower.wait_replayed(t)`` to wait for the replay. Two missed
    ``heartbeat`` intervals make it recreate its consumer (how fast it recovers from a lost server).
    """
    follower = Follower(pattern, fn, stream=stream or stream_for(pattern).name, name=name, heartbeat=heartbeat)
    return await follower.start(js, start=start)


__all__ = ["HEARTBEAT", "FollowHandler", "Follower", "follow"]
