"""The transactional outbox: record events in the same transaction as the change that causes them.

::

    outbox = Outbox("catalog", source="catalog")
    async with transaction(sessions) as session:
        await session.execute(insert(products).values(...))
        await outbox.add(session, ProductCreated(...), aggregate_id=product.id)
    # committed together, or neither; the relay publishes the event afterwards

The event is stored as its finished CloudEvents JSON (id, time and the current
``traceparent`` fixed now), so what the relay publishes is exactly what was
committed, and a republished event keeps its id (the ``Nats-Msg-Id`` dedup key).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from sqlalchemy import event as sa_event
from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncSession

from meshkit.basis.bus.envelope import Envelope, Event, envelope
from meshkit.basis.outbox.tables import tables_for

_WAKE_KEY = "meshkit.outbox.wake"


class Outbox:
    """Adds events to ``<prefix>_outbox`` inside the caller's transaction."""

    def __init__(self, prefix: str, *, source: str) -> None:
        self.prefix = prefix
        self.source = source
        self.table = tables_for(prefix).outbox
        self._insert = insert(self.table)  # built once: each add only binds its values
        self._listeners: list[Callable[[], None]] = []

    def on_commit(self, listener: Callable[[], None]) -> None:
        """Call ``listener()`` after each commit that added events (the in-process relay wakes on it)."""
        self._listeners.append(listener)

    async def add(
        self,
        session: AsyncSession,
        event: Event | Envelope,
        *,
        aggregate_id: str | None = None,
        subject: str | None = None,
    ) -> Envelope:
        """Stage ``event`` in ``session``'s transaction; returns its envelope (with its id).

        ``aggregate_id`` keys the ordering: the relay publishes the events of one
        aggregate in the order they were added. ``subject`` defaults to the type name.
        """
        env = envelope(event, source=self.source)
        await session.execute(
            self._insert,
            {
                "event_id": env.id,
                "subject": subject or env.type,
                "aggregate_id": aggregate_id,
                "body": env.to_json(),
                "created_at": time.time(),
            },
        )
        if self._listeners and not session.info.get(_WAKE_KEY):
            session.info[_WAKE_KEY] = True
            sa_event.listen(session.sync_session, "after_commit", self._committed, once=True)
        return env

    def _committed(self, sync_session) -> None:
        sync_session.info.pop(_WAKE_KEY, None)
        for listener in self._listeners:
            listener()


__all__ = ["Outbox"]
