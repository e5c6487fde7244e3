"""CQRS projections: apply a stream of events to a read model, checkpointed in the same transaction.

::

    async def apply(event: Envelope, session: Transaction) -> None:
        ...                                                 # update the read model

    projection = Projection("product-copy", "catalog.product.>", apply, sessions=sessions, bus=bus,
                            prefix="storefront", holder=settings.instance_id, reset=clear_read_model)
    projection.attach(service)                              # runs with the service
    await projection.rebuild()                              # after a read-model change: from the start

And the pattern of keeping a local copy of another service's data, in one line::

    keep_copy(service, bus, sessions, table=product_copy, pattern="catalog.product.>", row=product_row)

How it stays exact. Events are applied in stream order by one instance at a
time (the holder of the database lease ``projection:<name>``); each batch is
applied and the checkpoint (the last stream sequence applied) written in one
transaction, so after any crash the projection resumes right after the last
committed batch — never applying an event twice, never skipping one. The
holder reads from ``checkpoint + 1`` (its JetStream consumer is recreated at
that position whenever it takes the lease, after a failure, and after a
rebuild done by any instance, which it notices as a checkpoint it did not write).
A batch locks the checkpoint row first, and so does a rebuild: on PostgreSQL a
rebuild waits for the batch in flight (and then empties its rows too) or the
batch waits for the rebuild (and then finds the checkpoint moved and applies
nothing) — a rebuild never loses the events before it. An event that keeps
failing is dead-lettered after ``max_failures`` and skipped (an
:class:`~meshkit.basis.errors.Unavailable` — the database away — is retried
without counting); a message that is not an event envelope at all is
dead-lettered and skipped at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from nats.errors import TimeoutError as NatsTimeout
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from sqlalchemy import Table, and_, delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from meshkit.basis.bus.bus import Bus
from meshkit.basis.bus.dlq import letter_body
from meshkit.basis.bus.envelope import Envelope
from meshkit.basis.bus.streams import DLQ_PREFIX, stream_for
from meshkit.basis.errors import MeshkitError, Unavailable
from meshkit.basis.outbox.lease import Lease
from meshkit.basis.outbox.sql import insert_ignore
from meshkit.basis.outbox.tables import tables_for
from meshkit.basis.storage import Transaction, transaction

logger = logging.getLogger("meshkit.projection")

Apply = Callable[[Envelope, Transaction], Awaitable[None]]
Reset = Callable[[Transaction], Awaitable[None]]


class _Stale(Exception):
    """Internal: the checkpoint moved under us (a rebuild elsewhere): reposition, apply nothing."""


class Projection:
    """Applies events on ``pattern`` to a read model with ``apply(event, session)``."""

    def __init__(
        self,
        name: str,
        pattern: str,
        apply: Apply,
        *,
        sessions: async_sessionmaker[AsyncSession],
        bus: Bus,
        prefix: str,
        holder: str,
        reset: Reset | None = None,
        batch: int = 256,
        lease_ttl: float = 10.0,
        max_failures: int = 5,
    ) -> None:
        self.name = name
        self.pattern = pattern
        self.apply = apply
        self.reset = reset
        self.sessions = sessions
        self.bus = bus
        self.batch = batch
        self.max_failures = max_failures
        self.stream = stream_for(pattern).name
        self.durable = f"{prefix}-proj-{name}".replace(".", "-").replace("_", "-")
        self.table = tables_for(prefix).checkpoints
        self.lease = Lease(sessions, prefix=prefix, name=f"projection:{name}", holder=holder, ttl=lease_ttl)
        self.position = 0
        self.applied = 0
        self._sub: Any = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._failures = 0
        self._subjects: dict[int, str] = {}

    # -- lifecycle -------------------------------------------------------------------------

    def attach(self, service: Any) -> Projection:
        """Start with ``service`` (after the bus connected) and stop before the bus closes."""

        async def start(_s: Any) -> None:
            await self.start()

        async def stop(_s: Any) -> None:
            await self.stop()

        service.on_startup(start)
        service.on_shutdown(stop)
        service.state.setdefault("projections", []).append(self)
        return self

    async def start(self) -> None:
        """Run in a background task until :meth:`stop` (NATS may come later: the task keeps trying)."""
        self._stopping = False
        self._task = asyncio.create_task(self._loop(), name=f"meshkit-projection-{self.name}")

    async def stop(self) -> None:
        """Finish the batch in progress, stop, release the lease."""
        self._stopping = True
        task, self._task = self._task, None
        if task is not None:
            with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(task, 5.0)
        await self._drop_subscription()
        with contextlib.suppress(Exception):
            await self.lease.release()

    async def _loop(self) -> None:
        pause = 0.2
        while not self._stopping:
            try:
                if self.bus.nc is None:
                    await self.bus.connect()
                await self.bus.ensure_for(self.pattern)
                await self.run_once(wait=1.0)
                pause = 0.2
            except Exception as exc:
                logger.warning("projection %s: %s; retrying in %.1fs", self.name, exc, pause)
                await self._drop_subscription()
                await asyncio.sleep(pause)
                pause = min(pause * 2, 5.0)

    # -- one round -------------------------------------------------------------------------

    async def run_once(self, *, wait: float = 1.0) -> int:
        """Apply the next batch if we hold the lease; the number of events applied."""
        if not await self.lease.acquire():
            await self._drop_subscription()
            await asyncio.sleep(min(wait, self.lease.ttl / 3))
            return 0
        if self._sub is None:
            await self._subscribe()
        try:
            msgs = await self._sub.fetch(self.batch, timeout=wait)
        except (NatsTimeout, TimeoutError):
            # Idle: a rebuild done elsewhere shows as a checkpoint we did not write.
            if await self.checkpoint() != self.position:
                await self._drop_subscription()
            return 0
        envelopes = []
        self._subjects = {m.metadata.sequence.stream: m.subject for m in msgs}  # where a dead letter goes back to
        for msg in msgs:
            try:
                env = Envelope.from_json(msg.data)
            except MeshkitError as exc:  # never readable: retrying it would stop the projection for good
                await self._dead_letter(msg.subject, msg.metadata.sequence.stream, exc, None,
                                        msg.data.decode("utf-8", "replace"))
                continue
            env.stream_seq = msg.metadata.sequence.stream
            envelopes.append(env)
        try:
            # The checkpoint covers the whole batch, unreadable messages at its end included.
            return await self._apply_batch(envelopes, upto=msgs[-1].metadata.sequence.stream if msgs else 0)
        except _Stale:
            await self._drop_subscription()
            return 0
        except Exception as exc:
            await self._drop_subscription()
            if isinstance(exc, Unavailable):  # the database (or what apply needs) is away: no event's fault
                raise
            self._failures += 1
            if self._failures >= self.max_failures and envelopes:
                await self._apply_one_by_one(envelopes, exc)
                return 0
            raise

    async def _apply_batch(self, envelopes: list[Envelope], *, upto: int = 0) -> int:
        count = 0
        end = self.position
        async with transaction(self.sessions) as session:
            await self._hold(session)
            for env in envelopes:
                if env.stream_seq <= self.position:
                    continue
                await self.apply(env, session)
                count += 1
                end = env.stream_seq
            end = max(end, upto)
            if end > self.position:
                await self._save(session, end)
        self.position = end
        self.applied += count
        self._failures = 0
        return count

    async def _hold(self, session: Transaction) -> None:
        """Lock the checkpoint row for this transaction; :class:`_Stale` if it is not where we left it."""
        stored = await self._checkpoint(session, lock=True)
        if stored != self.position:
            self.position = stored
            raise _Stale()

    async def _apply_one_by_one(self, envelopes: list[Envelope], first_error: Exception) -> None:
        # A batch keeps failing: find the event at fault, dead-letter it, keep the rest.
        for env in envelopes:
            if env.stream_seq <= self.position:
                continue
            try:
                await self._apply_batch([env])
            except _Stale:
                return
            except Unavailable:  # not this event's fault: try again later, skip nothing
                raise
            except Exception as exc:
                await self._dead_letter(self._subjects.get(env.stream_seq, env.type), env.stream_seq, exc, env, None)
                try:
                    async with transaction(self.sessions) as session:
                        await self._hold(session)
                        await self._save(session, env.stream_seq)
                except _Stale:
                    return
                self.position = env.stream_seq
        self._failures = 0
        logger.error("projection %s: skipped a failing event after %d attempts (%s)", self.name,
                     self.max_failures, first_error)

    async def _dead_letter(self, subject: str, seq: int, exc: Exception, env: Envelope | None, raw: str | None) -> None:
        letter = {"consumer": self.durable, "stream": self.stream, "subject": subject, "stream_seq": seq,
                  "deliveries": self.max_failures if env is not None else 1,
                  "error": f"{type(exc).__name__}: {exc}", "failed_at": time.time(),
                  "event": env.attributes() if env is not None else None, "raw": raw}
        # Keyed by stream sequence: a replayed letter is a new message, whose own letter must not be a duplicate.
        await self.bus.js.publish(f"{DLQ_PREFIX}.{self.durable}.{subject}", letter_body(self.bus.js, letter),
                                  headers={"Nats-Msg-Id": f"dlq-{self.durable}-seq{seq}"})

    # -- checkpoint and consumer -----------------------------------------------------------

    async def _checkpoint(self, session: Transaction, *, lock: bool = False) -> int:
        t = self.table
        query = select(t.c.position).where(t.c.name == self.name)
        if not lock:
            row = (await session.execute(query)).first()
            return int(row[0]) if row else 0
        # FOR UPDATE (PostgreSQL; SQLite's write transactions are one at a time anyway). A missing
        # row is created first, so that there is one to lock (a concurrent creator's wins; we wait for it).
        row = (await session.execute(query.with_for_update())).first()
        if row is None:
            await session.execute(insert_ignore(session, t, {"name": self.name, "position": 0,
                                                             "updated_at": time.time()}))
            row = (await session.execute(query.with_for_update())).first()
        return int(row[0]) if row else 0

    async def _save(self, session: Transaction, position: int) -> None:
        """Write the checkpoint (its row is locked and exists: see :meth:`_checkpoint` with ``lock``)."""
        t = self.table
        await session.execute(update(t).where(t.c.name == self.name).values(position=position, updated_at=time.time()))

    async def checkpoint(self) -> int:
        """The stored checkpoint (last stream sequence applied; 0 before the first)."""
        async with transaction(self.sessions, write=False) as session:
            return await self._checkpoint(session)

    async def _subscribe(self) -> None:
        async with transaction(self.sessions, write=False) as session:
            self.position = await self._checkpoint(session)
        js = self.bus.js
        with contextlib.suppress(Exception):
            await js.delete_consumer(self.stream, self.durable)
        config = ConsumerConfig(
            durable_name=self.durable, filter_subject=self.pattern, ack_policy=AckPolicy.NONE,
            deliver_policy=DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=self.position + 1,
            inactive_threshold=3600.0,
        )
        await js.add_consumer(self.stream, config)
        self._sub = await js.pull_subscribe_bind(self.durable, stream=self.stream)

    async def _drop_subscription(self) -> None:
        sub, self._sub = self._sub, None
        if sub is not None:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()

    async def rebuild(self) -> None:
        """Empty the read model (``reset``) and the checkpoint in one transaction: the holder replays
        the stream from its start. Callable from any instance."""
        async with transaction(self.sessions) as session:
            await self._checkpoint(session, lock=True)  # first: waits for the batch in flight, holds off the next
            if self.reset is not None:
                await self.reset(session)
            await self._save(session, 0)

    async def caught_up(self) -> bool:
        """Whether every event on ``pattern`` stored so far is applied."""
        from nats.js.errors import NotFoundError

        try:
            last = await self.bus.js.get_msg(self.stream, subject=self.pattern)
        except NotFoundError:
            return True
        return int(last.seq or 0) <= await self.checkpoint()


def keep_copy(
    service: Any,
    bus: Bus,
    sessions: async_sessionmaker[AsyncSession],
    *,
    table: Table,
    pattern: str,
    row: Callable[[Envelope], dict[str, Any] | None],
    key: str = "id",
    version: str = "version",
    name: str | None = None,
    prefix: str | None = None,
) -> Projection:
    """Keep ``table`` a copy of another service's data, fed by its events on ``pattern``; one line.

    ``row(event)`` maps an event to the row it describes (``None``: ignore the event).
    Events whose type ends in ``.deleted`` delete the row with that ``key``; any other
    event upserts it — only if its ``version`` is newer than the stored one, so a
    copy never goes back in time. A rebuild empties ``table`` and replays the stream.
    """
    apply = copy_applier(table, row, key=key, version=version)

    async def reset(session: Transaction) -> None:
        await session.execute(delete(table))

    projection = Projection(
        name or f"copy-{table.name}", pattern, apply, sessions=sessions, bus=bus, prefix=prefix or service.name,
        holder=service.settings.instance_id, reset=reset,
    )
    return projection.attach(service)


def copy_applier(table: Table, row: Callable[[Envelope], dict[str, Any] | None], *, key: str = "id",
                 version: str = "version") -> Apply:
    """The ``apply`` function :func:`keep_copy` uses (version-guarded upsert, delete on ``*.deleted``)."""
    k, v = table.c[key], table.c[version]

    async def apply(event: Envelope, session: Transaction) -> None:
        values = row(event)
        if values is None:
            return
        if event.type.endswith(".deleted"):
            await session.execute(delete(table).where(and_(k == values[key], v <= values.get(version, 2**62))))
            return
        result = await session.execute(
            update(table).where(k == values[key], v < values[version]).values(**values)
        )
        if result.rowcount == 0:  # type: ignore[attr-defined]
            await session.execute(insert_ignore(session, table, values))

    return apply


__all__ = ["Projection", "copy_applier", "keep_copy"]
