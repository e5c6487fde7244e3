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

from sqlalchemy import insert

from meshkit.basis.bus.envelope import Envelope, Event, envelope
from meshkit.basis.outbox.tables import tables_for
from meshkit.basis.storage import Prepared, Transaction, after_commit

_COLUMNS = ("event_id", "subject", "aggregate_id", "body", "created_at")


class Outbox:
    """Adds events to ``<prefix>_outbox`` inside the caller's transaction."""

    def __init__(self, prefix: str, *, source: str) -> None:
        self.prefix = prefix
        self.source = source
        self.table = tables_for(prefix).outbox
        # Compiled once, sent straight to the driver: one row per business transaction is
        # the hot path of every service that publishes (see meshkit.basis.storage.prepared).
        self._insert = Prepared(insert(self.table), _COLUMNS)
        self._listeners: list[Callable[[], None]] = []

    def on_commit(self, listener: Callable[[], None]) -> None:
        """Call ``listener()`` after each commit that added events (the in-process relay wakes on it)."""
        self._listeners.append(listener)

    async def add(
        self,
        session: Transaction,
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
        await self._insert.run(session, (env.id, subject or env.type, aggregate_id, env.to_json(), time.time()))
        if self._listeners:
            after_commit(session, self._committed)
        return env

    def _committed(self) -> None:
        for listener in self._listeners:
            listener()


__all__ = ["Outbox"]
