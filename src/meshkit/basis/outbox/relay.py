"""The outbox relay: publish committed events to JetStream, in order per aggregate, and mark them sent.

One relay per service instance runs, but only the holder of the database lease
``outbox`` publishes (see :mod:`meshkit.basis.outbox.lease`): several instances
never publish the same backlog at once, and when the holder dies another takes
over after the lease's ttl. (Lease, not partitioning: it needs no coordination
beyond the database the service already has.)

Each round reads up to ``batch`` unsent rows in ``seq`` order and publishes
them pipelined, in waves: a wave holds at most one event per aggregate, so the
events of one aggregate reach the stream in order; when an event fails, the
later events of its aggregate wait for the next round. While events keep
coming (a commit lands during the round), ``sent_at`` is written for the rows of
several rounds at once — at the latest every ``mark_interval`` seconds or
``batch`` rows, in one ``UPDATE`` (rounds in between read past the last
published ``seq``); when the outbox goes quiet, at once. Under load that is a
few writes a second instead of one per round, which matters most on
SQLite, where the relay's write would otherwise queue for the lock behind every
business transaction of the service. While commits come slower than
``eager_rate`` (250 a second, averaged over the last ~100 ms: see
:class:`~meshkit.basis.bus.pace.Pace`), a round starts as soon as a commit wakes
the relay, so each event is on the bus within a round trip; faster, rounds start
at most every ``linger`` seconds (25 ms), so a steady stream costs a read per
several events rather than one per commit. Every publish carries
``Nats-Msg-Id`` = event id, so an event published again — by a relay that died
between publishing and marking (at most the last ``mark_interval``'s events),
or by another holder — is dropped as a duplicate by JetStream within the
duplicate window, and by the consumers' inbox after it.

An event too large for NATS (``max_payload``) is never sent: it and the later
events of its aggregate stay in the outbox (in the backlog, logged every 10 s),
the other aggregates' events go on. :meth:`Outbox.add` refuses such events up front.

NATS down: writes keep succeeding (they only touch the database); publishing
fails, the relay backs off and retries, and ``backlog`` (gauge
``meshkit_outbox_backlog``) grows until NATS is back and it drains.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from meshkit.basis.bus.bus import Bus
from meshkit.basis.bus.pace import Pace
from meshkit.basis.errors import PayloadTooLarge
from meshkit.basis.outbox.lease import Lease
from meshkit.basis.outbox.outbox import DEFAULT_MAX_BODY, HEADER_ROOM, Outbox
from meshkit.basis.outbox.sql import delete_some
from meshkit.basis.storage import transaction

logger = logging.getLogger("meshkit.outbox")
#: Sent rows deleted per purge transaction, and transactions per purge (the rest at the next round).
_PURGE_CHUNK = 5000
_PURGE_CHUNKS = 20


class Relay:
    """Moves ``outbox``'s rows to the bus. :meth:`start` runs it in a task; :meth:`run_once` is one round."""

    def __init__(
        self,
        outbox: Outbox,
        sessions: async_sessionmaker[AsyncSession],
        bus: Bus,
        *,
        holder: str,
        batch: int = 500,
        lease_ttl: float = 10.0,
        poll: float = 0.5,
        mark_interval: float = 0.1,
        linger: float = 0.025,
        eager_rate: float = 250.0,
        publish_timeout: float = 5.0,
        retention: float = 3600.0,
        purge_every: float = 60.0,
        metrics: Any = None,
    ) -> None:
        self.outbox = outbox
        self.sessions = sessions
        self.bus = bus
        self.table = outbox.table
        self.batch = batch
        self.poll = poll
        self.mark_interval = mark_interval
        self.linger = linger
        self._pace = Pace(eager_rate)
        self._commits = 0  # commits that woke the relay since its loop last looked
        self._too_large_said = -60.0  # when an event too large to publish was last logged
        self.publish_timeout = publish_timeout
        self.retention = retention
        self.purge_every = purge_every
        self.lease = Lease(sessions, prefix=outbox.prefix, name="outbox", holder=holder, ttl=lease_ttl)
        self.backlog = 0
        self.published = 0
        self.failures = 0
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._last_count = 0.0
        self._last_purge = time.monotonic()
        self._marks: list[int] = []  # published, sent_at not yet written
        self._marked_at = time.monotonic()
        self._cursor = 0  # rounds between two marks read after the last seq they published
        self._gauge = self._counter = None
        if metrics is not None:
            self._gauge = metrics.gauge("meshkit_outbox_backlog", "Events in the outbox not yet published.")
            self._counter = metrics.counter("meshkit_outbox_published_total", "Events the relay published.")
        outbox.on_commit(self.wake)

    def wake(self) -> None:
        """Look at the outbox now rather than at the next poll (called after a commit that added events)."""
        self._commits += 1
        self._wake.set()

    async def start(self) -> None:
        """Run rounds in a background task until :meth:`stop`."""
        self._stopping = False
        self._task = asyncio.create_task(self._loop(), name=f"meshkit-relay-{self.outbox.prefix}")

    async def stop(self, timeout: float = 5.0) -> None:
        """Finish the round in progress (up to ``timeout``), stop, and release the lease."""
        self._stopping = True
        self._wake.set()
        task, self._task = self._task, None
        if task is not None:
            try:
                await asyncio.wait_for(task, timeout)
            except (TimeoutError, asyncio.CancelledError):
                task.cancel()
        with contextlib.suppress(Exception):
            await self._mark()  # else the next holder publishes them again (dropped as duplicates)
        with contextlib.suppress(Exception):
            await self.lease.release()

    async def _loop(self) -> None:
        pause = 0.1
        started = 0.0
        while not self._stopping:
            # While commits come slower than ``eager_rate`` a second, a round starts as soon as
            # one wakes the relay (each event goes out within a round trip); faster, rounds start
            # at most every ``linger`` seconds and carry the events committed in between.
            commits, self._commits = self._commits, 0
            self._pace.add(commits)
            if self._pace.busy():
                gap = started + self.linger - time.monotonic()
                if gap > 0:
                    await asyncio.sleep(gap)
            started = time.monotonic()
            # Cleared before the round reads, not after: a commit landing while the
            # round runs sets it again and the next round starts at once.
            self._wake.clear()
            try:
                sent = await self._round()
                # Marks wait only while more events keep coming (a commit woke us during
                # the round): the next round's publishes share the UPDATE. Once quiet, at once.
                if self._marks and (not self._wake.is_set() or len(self._marks) >= self.batch
                                    or time.monotonic() - self._marked_at >= self.mark_interval):
                    await self._mark()
                pause = 0.1
            except Exception as exc:  # database or NATS trouble: back off, keep the rows
                self.failures += 1
                logger.warning("outbox relay: round failed (%s); retrying in %.1fs", exc, pause)
                await asyncio.sleep(pause)
                pause = min(pause * 2, 5.0)
                continue
            if sent >= self.batch or self._stopping:
                continue  # more waiting: no sleep
            wait = self.poll
            if self._marks:  # wake up in time to write the marks down
                wait = max(0.0, min(wait, self._marked_at + self.mark_interval - time.monotonic()))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), wait)

    async def run_once(self) -> int:
        """One round: renew the lease, publish up to ``batch`` pending events, mark them; the number sent."""
        sent = await self._round()
        await self._mark()
        return sent

    async def _round(self) -> int:
        await self._count_backlog()
        if not self.bus.connected:  # NATS down or not reached yet: the rows wait, the backlog shows it
            return 0
        if not await self.lease.acquire():
            return 0
        t = self.table
        async with transaction(self.sessions, write=False) as session:
            rows = (
                await session.execute(
                    select(t.c.seq, t.c.event_id, t.c.subject, t.c.aggregate_id, t.c.body)
                    .where(t.c.sent_at.is_(None), t.c.seq > self._cursor)
                    .order_by(t.c.seq)
                    .limit(self.batch)
                )
            ).all()
        await self._maybe_purge()
        if not rows:
            return 0
        sent, error = await self._publish(rows)
        self._marks.extend(sent)
        if error is None:
            self._cursor = rows[-1].seq  # all published: the next round reads what came after
        else:
            # Some aggregates stopped at a failed event: write down what went out, then
            # read from the start again (only the events not sent are left there).
            await self._mark()
        if sent:
            self.published += len(sent)
            self.backlog = max(0, self.backlog - len(sent))
            if self._counter is not None:
                self._counter.inc(len(sent))
            if self._gauge is not None:
                self._gauge.set(self.backlog)
        if error is not None and not sent:
            raise error
        return len(sent)

    async def _mark(self) -> None:
        """Write ``sent_at`` on the published rows (one statement per few hundred) and rewind the cursor."""
        marks = self._marks
        if marks:
            t = self.table
            now = time.time()
            async with transaction(self.sessions) as session:
                for i in range(0, len(marks), 400):
                    await session.execute(update(t).where(t.c.seq.in_(marks[i : i + 400])).values(sent_at=now))
            self._marks = []
        self._marked_at = time.monotonic()
        # From the start again: an event whose transaction committed after a later
        # one's (PostgreSQL hands out seq before commit) is not skipped.
        self._cursor = 0

    async def _publish(self, rows: list[Any]) -> tuple[list[int], Exception | None]:
        """Publish in waves of one event per aggregate; the seqs acknowledged, and the first error."""
        js = self.bus.js
        for subject in {r.subject for r in rows}:
            await self.bus.ensure_for(subject)
        chains: dict[Any, list[Any]] = {}
        for r in rows:
            # Events without an aggregate have no order to keep: each is its own chain.
            chains.setdefault(r.aggregate_id if r.aggregate_id is not None else ("seq", r.seq), []).append(r)
        sent: list[int] = []
        error: Exception | None = None
        depth = 0
        limit = self._max_body()
        while chains:
            wave = [chain[depth] for chain in chains.values()]
            # One failure holds back the later events of its own aggregate only, never the others'.
            futures: list[asyncio.Future[Any] | None] = []
            for r in wave:
                if len(r.body) > limit:  # never publishable: its aggregate waits (loudly), the others go on
                    futures.append(None)
                    too_large = PayloadTooLarge(
                        f"outbox event {r.event_id} (seq {r.seq}) is {len(r.body)} bytes, more than NATS takes "
                        f"({limit}); the later events of aggregate {r.aggregate_id!r} wait behind it",
                        reason="event_too_large")
                    error = error or too_large
                    if time.monotonic() - self._too_large_said > 10.0:
                        self._too_large_said = time.monotonic()
                        logger.error("outbox relay: %s", too_large.message)
                    continue
                try:
                    futures.append(await js.publish_async(r.subject, r.body, headers={"Nats-Msg-Id": r.event_id}))
                except Exception as exc:  # connection closed...: this one waits for the next round
                    futures.append(None)
                    error = error or exc
            done: set[asyncio.Future[Any]] = set()
            if any(f is not None for f in futures):
                done, pending = await asyncio.wait([f for f in futures if f is not None], timeout=self.publish_timeout)
                for f in pending:
                    f.cancel()
            failed: set[Any] = set()
            for key, r, f in zip(list(chains), wave, futures, strict=True):
                if f is None:
                    failed.add(key)
                elif f in done and not f.cancelled() and f.exception() is None:
                    sent.append(r.seq)
                else:
                    failed.add(key)
                    if error is None:
                        error = (f.exception() if f in done and not f.cancelled() else None) or TimeoutError(
                            f"JetStream did not acknowledge event {r.event_id} within {self.publish_timeout}s"
                        )
            depth += 1
            chains = {k: c for k, c in chains.items() if k not in failed and len(c) > depth}
        return sent, error

    def _max_body(self) -> int:
        # The server's max_payload counts the headers too (Nats-Msg-Id): leave them room. A body
        # over it is refused by nats-py before sending, and its publish_async future never settles.
        nc = self.bus.nc
        return (nc.max_payload if nc is not None and nc.max_payload else DEFAULT_MAX_BODY + HEADER_ROOM) - HEADER_ROOM

    async def _count_backlog(self) -> None:
        now = time.monotonic()
        if now - self._last_count < 0.5:
            return
        self._last_count = now
        t = self.table
        async with transaction(self.sessions, write=False) as session:
            unsent = int((await session.execute(select(func.count()).where(t.c.sent_at.is_(None)))).scalar_one())
        self.backlog = max(0, unsent - len(self._marks))
        if self._gauge is not None:
            self._gauge.set(self.backlog)

    async def _maybe_purge(self) -> None:
        # Sent rows are kept ``retention`` seconds (for inspection), then removed: every
        # ``purge_every`` seconds, busy or not, in chunks so the service's writes go in between.
        if time.monotonic() - self._last_purge < self.purge_every:
            return
        self._last_purge = time.monotonic()
        t = self.table
        cut = time.time() - self.retention
        for _ in range(_PURGE_CHUNKS):
            async with transaction(self.sessions) as session:
                gone = await delete_some(session, t, t.c.sent_at.is_not(None) & (t.c.sent_at < cut),
                                         limit=_PURGE_CHUNK)
            if gone < _PURGE_CHUNK:
                return
        self._last_purge = 0.0  # more left: the next round goes on


__all__ = ["Relay"]
