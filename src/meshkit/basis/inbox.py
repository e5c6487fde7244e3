"""The inbox: idempotent consumers. An event's effect and the record that it was applied commit together.

::

    inbox = Inbox(sessions, prefix="search", consumer="search")

    @bus.handler("catalog.product.*", durable="search")
    @inbox.handler
    async def on_product(event: Envelope, session: AsyncSession):
        await session.execute(...)            # the effect, in the same transaction as the inbox row

A redelivered event (the bus delivers at least once: after a crash before the
ack, a relay republishing, a dead letter replayed) finds its id in
``<prefix>_inbox`` and is acknowledged without a second effect. Two deliveries
racing (two instances) serialise on the row: PostgreSQL makes the second
``INSERT`` wait for the first transaction, SQLite has one writer at a time.
A handler that raises or returns ``Retry`` rolls the whole transaction back —
the inbox row too — so the retry really runs again.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Awaitable, Callable

from sqlalchemy import delete
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from meshkit.basis.bus.envelope import Envelope
from meshkit.basis.bus.signals import Ack, Outcome, Retry
from meshkit.basis.outbox.sql import insert_ignore
from meshkit.basis.outbox.tables import tables_for
from meshkit.basis.storage import transaction

InboxHandler = Callable[[Envelope, AsyncSession], Awaitable[Outcome | None]]


class _Undo(Exception):
    """Internal: roll the transaction back but hand the handler's outcome to the consumer."""

    def __init__(self, outcome: Outcome) -> None:
        self.outcome = outcome


class Inbox:
    """Processed event ids of ``consumer`` in ``<prefix>_inbox``."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], *, prefix: str, consumer: str) -> None:
        self.sessions = sessions
        self.table = tables_for(prefix).inbox
        self.consumer = consumer
        self.skipped = 0

    async def claim(self, session: AsyncSession, event_id: str) -> bool:
        """Record ``event_id`` in ``session``'s transaction; ``False`` if it was already applied."""
        result = await session.execute(
            insert_ignore(session, self.table, {"consumer": self.consumer, "event_id": event_id,
                                                "processed_at": time.time()})
        )
        return result.rowcount == 1  # type: ignore[attr-defined]

    async def seen(self, event_id: str) -> bool:
        """Whether ``event_id`` was applied (outside any transaction; for tests and tools)."""
        t = self.table
        async with transaction(self.sessions, write=False) as session:
            row = await session.execute(
                t.select().where(t.c.consumer == self.consumer, t.c.event_id == event_id)
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
                    return outcome
            except _Undo as undo:
                return undo.outcome

        return handle

    async def purge(self, older_than: float) -> int:
        """Forget ids applied more than ``older_than`` seconds ago (keep it longer than any redelivery)."""
        t = self.table
        async with transaction(self.sessions) as session:
            result = await session.execute(
                delete(t).where(t.c.consumer == self.consumer, t.c.processed_at < time.time() - older_than)
            )
        return int(result.rowcount or 0)  # type: ignore[attr-defined]


__all__ = ["Inbox", "InboxHandler"]
