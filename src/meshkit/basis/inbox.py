"""The inbox: idempotent consumers. An event's effect and the record that it was applied commit together.

::

    inbox = Inbox(sessions, prefix="search", consumer="search")

    @bus.handler("catalog.product.*", durable="search")
    @inbox.handler
    async def on_product(event: Envelope, session: Transaction):
        await session.execute(...)            # the effect, in the same transaction as the inbox row

A redelivered event (the bus delivers at least once: after a crash before the
ack, a relay republishing, a dead letter replayed) finds its id in
``<prefix>_inbox`` and is acknowledged without a second effect. Two deliveries
racing (two instances) serialise on the row: PostgreSQL makes the second
``INSERT`` wait for the first transaction, SQLite has one writer at a time.
A handler that raises or returns ``Retry`` rolls the whole transaction back —
the inbox row too — so the retry really runs again.

Batches. The bus consumer hands a wrapped handler each fetched batch at once
(its ``batch`` attribute): the ids are claimed with one statement and every new
event's effect runs in one transaction, so a batch costs one commit instead of
one per event — each effect still commits with its inbox row, nothing is
acknowledged before the commit. If any event of the batch raises or asks for a
``Retry``, the batch is rolled back and its events are applied again one
transaction each, so one poison event does not hold the others back (a handler
can therefore run more than once for a delivery: only what it does in
``session`` counts).
"""

from __future__ import annotations

import functools
import hashlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence

from sqlalchemy import delete
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from meshkit.basis.bus.envelope import Envelope
from meshkit.basis.bus.handling import event_context
from meshkit.basis.bus.signals import Ack, Outcome, Retry
from meshkit.basis.outbox.sql import delete_some, insert_ignore
from meshkit.basis.outbox.tables import tables_for
from meshkit.basis.storage import Transaction, transaction

InboxHandler = Callable[[Envelope, Transaction], Awaitable[Outcome | None]]
logger = logging.getLogger("meshkit.inbox")
#: Ids forgotten per purge (one transaction).
_PURGE_CHUNK = 1000
#: Rows per multi-row claim (3 parameters each: far below SQLite's variable limit).
_CLAIM_CHUNK = 300
#: Characters the inbox's ``event_id`` column holds (PostgreSQL refuses more; SQLite would not).
_ID_LENGTH = 64


def inbox_key(event_id: str) -> str:
    """What the inbox records for ``event_id``: the id itself, or a digest when it is longer than the column.

    A CloudEvents id may be any string; ours are 32 hex digits, other publishers' may be longer.
    """
    if len(event_id) <= _ID_LENGTH:
        return event_id
    return "sha256:" + hashlib.sha256(event_id.encode()).hexdigest()[: _ID_LENGTH - 7]


class _Undo(Exception):
    """Internal: roll the transaction back but hand the handler's outcome to the consumer."""

    def __init__(self, outcome: Outcome) -> None:
        self.outcome = outcome


class Inbox:
    """Processed event ids of ``consumer`` in ``<prefix>_inbox``.

    Ids are kept ``retention`` seconds (a week: far longer than any redelivery or
    relay republish), then forgotten in chunks, at most every ``purge_every``
    seconds, after a commit.
    """

    def __init__(self, sessions: async_sessionmaker[AsyncSession], *, prefix: str, consumer: str,
                 retention: float = 7 * 86400.0, purge_every: float = 60.0) -> None:
        self.sessions = sessions
        self.table = tables_for(prefix).inbox
        self.consumer = consumer
        self.retention = retention
        self.purge_every = purge_every
        self.skipped = 0
        self._purged_at = time.monotonic()
        self._listeners: list[Callable[[Sequence[Envelope]], None]] = []

    def on_commit(self, listener: Callable[[Sequence[Envelope]], None]) -> None:
        """Call ``listener(events)`` after each commit with the events whose effects it applied
        (not the skipped duplicates); for metrics, notifications, measurements."""
        self._listeners.append(listener)

    def _committed(self, events: Sequence[Envelope]) -> None:
        if events:
            for listener in self._listeners:
                listener(events)

    async def claim(self, session: Transaction, event_id: str) -> bool:
        """Record ``event_id`` in ``session``'s transaction; ``False`` if it was already applied."""
        result = await session.execute(
            insert_ignore(session, self.table, {"consumer": self.consumer, "event_id": inbox_key(event_id),
                                                "processed_at": time.time()})
        )
        return result.rowcount == 1  # type: ignore[attr-defined]

    async def claim_many(self, session: Transaction, event_ids: Sequence[str]) -> set[str]:
        """Record all ``event_ids`` in ``session``'s transaction (one statement per few hundred);
        the ids that were not applied before (an id given twice counts once)."""
        t = self.table
        now = time.time()
        keys = {inbox_key(e): e for e in event_ids}
        fresh: set[str] = set()
        for i in range(0, len(event_ids), _CLAIM_CHUNK):
            rows = [{"consumer": self.consumer, "event_id": inbox_key(e), "processed_at": now}
                    for e in event_ids[i : i + _CLAIM_CHUNK]]
            stmt = insert_ignore(session, t, rows).returning(t.c.event_id)
            fresh.update(keys[k] for k in (await session.execute(stmt)).scalars())
        return fresh

    async def seen(self, event_id: str) -> bool:
        """Whether ``event_id`` was applied (outside any transaction; for tests and tools)."""
        t = self.table
        async with transaction(self.sessions, write=False) as session:
            row = await session.execute(
                t.select().where(t.c.consumer == self.consumer, t.c.event_id == inbox_key(event_id))
            )
            return row.first() is not None

    def handler(self, fn: InboxHandler) -> Callable[[Envelope], Awaitable[Outcome | None]]:
        """Wrap ``fn(event, session)`` into a bus handler that applies each event at most once."""

        @functools.wraps(fn)
        async def handle(event: Envelope) -> Outcome | None:
            try:
                async with transaction(self.sessions) as session:
                    if not await self.claim(session, event.id):
                        self.skipped += 1
                        return Ack
                    outcome = await fn(event, session)
                    if isinstance(outcome, Retry):
                        raise _Undo(outcome)
            except _Undo as undo:
                return undo.outcome
            self._committed((event,))
            await self._maybe_purge()
            return outcome

        async def batch(events: Sequence[Envelope]) -> list[Outcome | BaseException | None]:
            """Apply ``events`` in one transaction; one outcome per event (see the module's doc)."""
            try:
                return await self._apply_batch(fn, events)
            except Exception:  # one of them failed or asked for a retry: one transaction each
                return [await _one(handle, event) for event in events]

        handle.batch = batch  # type: ignore[attr-defined]
        return handle

    async def _apply_batch(self, fn: InboxHandler, events: Sequence[Envelope]) -> list[Outcome | BaseException | None]:
        outcomes: list[Outcome | BaseException | None] = []
        applied: list[Envelope] = []
        async with transaction(self.sessions) as session:
            fresh = await self.claim_many(session, [e.id for e in events])
            for event in events:
                if event.id not in fresh:
                    outcomes.append(Ack)
                    continue
                fresh.discard(event.id)  # the same id twice in a batch: the second is a duplicate
                with event_context(event):
                    outcome = await fn(event, session)
                if isinstance(outcome, Retry):
                    raise _Undo(outcome)
                outcomes.append(outcome)
                applied.append(event)
        self.skipped += len(events) - len(applied)
        self._committed(applied)
        await self._maybe_purge()
        return outcomes

    async def _maybe_purge(self) -> None:
        # Every ``purge_every`` seconds, one chunk of ids older than ``retention``; a full chunk
        # means more are left, and the next commit takes the next chunk. After the commit it
        # follows: a failure here is logged, never the event's.
        if time.monotonic() - self._purged_at < self.purge_every:
            return
        self._purged_at = time.monotonic()
        t = self.table
        try:
            async with transaction(self.sessions) as session:
                gone = await delete_some(
                    session, t, (t.c.consumer == self.consumer) & (t.c.processed_at < time.time() - self.retention),
                    limit=_PURGE_CHUNK)
        except Exception as exc:  # the database away: next time
            logger.warning("inbox %s: purging applied ids failed (%s); trying again later", self.consumer, exc)
            return
        if gone == _PURGE_CHUNK:
            self._purged_at = 0.0

    async def purge(self, older_than: float) -> int:
        """Forget ids applied more than ``older_than`` seconds ago (keep it longer than any redelivery)."""
        t = self.table
        async with transaction(self.sessions) as session:
            result = await session.execute(
                delete(t).where(t.c.consumer == self.consumer, t.c.processed_at < time.time() - older_than)
            )
        return int(result.rowcount or 0)  # type: ignore[attr-defined]


async def _one(handle: Callable[[Envelope], Awaitable[Outcome | None]], event: Envelope) -> Outcome | BaseException | None:
    with event_context(event):
        try:
            return await handle(event)
        except Exception as exc:  # the consumer retries it, then dead-letters it
            return exc


__all__ = ["Inbox", "InboxHandler", "inbox_key"]
