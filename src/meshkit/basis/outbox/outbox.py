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
from meshkit.basis.errors import PayloadTooLarge
from meshkit.basis.outbox.tables import tables_for
from meshkit.basis.storage import Prepared, Transaction, after_commit

_COLUMNS = ("event_id", "subject", "aggregate_id", "body", "created_at")
#: Bytes a NATS message's headers may take (``Nats-Msg-Id``); the server's ``max_payload`` counts them.
HEADER_ROOM = 1024
#: The largest event body by default: NATS's default ``max_payload`` (1 MiB) less the headers' room.
DEFAULT_MAX_BODY = 1024 * 1024 - HEADER_ROOM


class Outbox:
    """Adds events to ``<prefix>_outbox`` inside the caller's transaction."""

    def __init__(self, prefix: str, *, source: str, max_body: int = DEFAULT_MAX_BODY) -> None:
        self.prefix = prefix
        self.source = source
        #: Larger events are refused by :meth:`add` (raise it with the NATS server's ``max_payload``).
        self.max_body = max_body
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
        :class:`~meshkit.basis.errors.PayloadTooLarge` (reason ``event_too_large``) when
        the event's JSON is larger than ``max_body``.
        """
        env = envelope(event, source=self.source)
        body = env.to_json()
        if len(body) > self.max_body:
            # Refused here, in the business transaction: stored, it could never be published
            # and would hold back every later event of its aggregate.
            raise PayloadTooLarge(
                f"event {env.type} is {len(body)} bytes, more than the {self.max_body} an event may have: "
                "publish a reference (e.g. an object key) instead of the content",
                reason="event_too_large", details={"type": env.type, "size": len(body), "limit": self.max_body},
            )
        await self._insert.run(session, (env.id, subject or env.type, aggregate_id, body, time.time()))
        if self._listeners:
            after_commit(session, self._committed)
        return env

    def _committed(self) -> None:
        for listener in self._listeners:
            listener()


__all__ = ["Outbox"]
