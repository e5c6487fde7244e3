"""The event store: append with optimistic concurrency, read back in order, snapshots.

::

    outbox = Outbox("orders", source="orders")
    store = EventStore(engine, prefix="orders", outbox=outbox)
    await store.append("order-1", [OrderPlaced(...)], expected_version=0, aggregate_type="orders.order")
    events = await store.load("order-1")            # StoredEvent, version 1, 2, ...

``expected_version`` is the version the caller's decision was based on. The
append checks it first (a clear :class:`Conflict` early) and the unique
``(aggregate_id, version)`` constraint settles true races: of two concurrent
appends at the same version exactly one commits, the other gets ``Conflict``
with reason ``version_conflict`` and ``details`` ``{aggregate_id, expected,
actual}`` — reload, decide again, retry.

With an ``outbox``, every appended event is also written to the outbox in the
same transaction (event id = CloudEvents id = ``Nats-Msg-Id``), so the events
that are stored are exactly the events that get published.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Protocol

import orjson
from sqlalchemy import func, insert, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncEngine

from meshkit.basis.bus.envelope import Envelope, Event, envelope
from meshkit.basis.errors import Conflict, MeshkitError
from meshkit.basis.eventstore.tables import event_tables
from meshkit.basis.storage import Transaction, session_factory, transaction, translate_errors


@dataclass(frozen=True, slots=True)
class StoredEvent:
    """One event as the store holds it. ``position`` orders the whole store."""

    position: int
    event_id: str
    aggregate_type: str
    aggregate_id: str
    version: int
    type: str
    data: dict[str, Any]
    metadata: dict[str, Any]
    recorded_at: datetime


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The state of an aggregate after ``version`` events, in the shape ``schema``."""

    aggregate_id: str
    aggregate_type: str
    version: int
    schema: int
    state: dict[str, Any]
    taken_at: datetime | None = None


class OutboxWriter(Protocol):
    """What the store needs from an outbox (:class:`meshkit.basis.outbox.Outbox` is one)."""

    source: str

    async def add(
        self, session: Transaction, event: Event | Envelope, *, aggregate_id: str | None = None,
        subject: str | None = None,
    ) -> Envelope:
        """Stage ``event`` in ``session``'s transaction (no commit)."""
        ...


class EventStore:
    """Events of many aggregates in ``<prefix>_events`` (see :mod:`meshkit.basis.eventstore.tables`).

    With an ``outbox`` every appended event is staged in it, in the append's
    transaction, as a CloudEvent whose id is the stored ``event_id``, whose
    ``subject`` is the aggregate id and whose source is the outbox's.
    """

    def __init__(
        self,
        engine: AsyncEngine,
        *,
        prefix: str,
        outbox: OutboxWriter | None = None,
    ) -> None:
        self.engine = engine
        self.tables = event_tables(prefix)
        self.outbox = outbox
        self.sessions = session_factory(engine)

    async def append(
        self,
        aggregate_id: str,
        events: Sequence[Event],
        *,
        expected_version: int,
        aggregate_type: str,
        metadata: Mapping[str, Any] | None = None,
        snapshot: Snapshot | None = None,
        session: Transaction | None = None,
    ) -> list[StoredEvent]:
        """Append ``events`` as versions ``expected_version + 1 ...``; all or nothing.

        ``session``: append inside the caller's transaction (committed by the
        caller, together with its other writes); otherwise in a transaction of
        its own. ``snapshot`` is saved in the same transaction. After a
        :class:`Conflict` the caller's transaction must be rolled back (on
        PostgreSQL the failed insert has aborted it).
        """
        if not events:
            return []
        try:
            async with self._unit(session) as s:
                actual = await self._current_version(s, aggregate_id)
                if actual != expected_version:
                    raise self._conflict(aggregate_id, expected_version, actual)
                stored = self._rows(aggregate_id, aggregate_type, expected_version, events, metadata)
                t = self.tables.events
                # RETURNING with many rows (SQLAlchemy's "insertmanyvalues"): positions in input order.
                result = await s.execute(
                    insert(t).returning(t.c.position, sort_by_parameter_order=True), [_row(e) for e in stored]
                )
                stored = [replace(e, position=p) for e, p in zip(stored, result.scalars().all(), strict=True)]
                if snapshot is not None:
                    await self._put_snapshot(s, snapshot)
                if self.outbox is not None:
                    for e, event in zip(stored, events, strict=True):
                        await self.outbox.add(s, self._envelope(self.outbox.source, e, event), aggregate_id=aggregate_id)
        except Conflict as exc:
            if exc.reason != "duplicate" or "event_id" in (exc.details or {}).get("fields", ()):
                raise
            # Lost the race on the unique (aggregate_id, version): report what won.
            actual = await self.version(aggregate_id)
            raise self._conflict(aggregate_id, expected_version, actual) from exc
        return stored

    async def load(self, aggregate_id: str, *, after_version: int = 0) -> list[StoredEvent]:
        """The events of ``aggregate_id`` with a version above ``after_version``, in order."""
        t = self.tables.events
        query = (
            select(t)
            .where(t.c.aggregate_id == aggregate_id, t.c.version > after_version)
            .order_by(t.c.version)
        )
        async with transaction(self.sessions, write=False) as s:
            rows = (await s.execute(query)).mappings().all()
        return [_stored(r) for r in rows]

    async def version(self, aggregate_id: str) -> int:
        """The last stored version of ``aggregate_id`` (0 when it has no events)."""
        async with transaction(self.sessions, write=False) as s:
            return await self._current_version(s, aggregate_id)

    async def read_all(self, *, after_position: int = 0, limit: int = 1000) -> list[StoredEvent]:
        """Up to ``limit`` events of every aggregate after ``after_position``, in store order.

        Positions only grow, but on PostgreSQL a transaction that took a lower
        position may commit after a higher one is visible; a reader that must
        not skip (a projection) re-reads a short window behind its checkpoint.
        """
        t = self.tables.events
        query = select(t).where(t.c.position > after_position).order_by(t.c.position).limit(limit)
        async with transaction(self.sessions, write=False) as s:
            rows = (await s.execute(query)).mappings().all()
        return [_stored(r) for r in rows]

    async def snapshot(self, aggregate_id: str) -> Snapshot | None:
        """The latest snapshot of ``aggregate_id``, if one was taken."""
        t = self.tables.snapshots
        async with transaction(self.sessions, write=False) as s:
            row = (await s.execute(select(t).where(t.c.aggregate_id == aggregate_id))).mappings().first()
        if row is None:
            return None
        return Snapshot(
            aggregate_id=row["aggregate_id"], aggregate_type=row["aggregate_type"], version=row["version"],
            schema=row["schema"], state=orjson.loads(row["state"]), taken_at=_time(row["taken_at"]),
        )

    async def save_snapshot(self, snapshot: Snapshot, *, session: Transaction | None = None) -> None:
        """Store ``snapshot``, replacing the aggregate's previous one."""
        async with self._unit(session) as s:
            await self._put_snapshot(s, snapshot)

    # -- internals ------------------------------------------------------------

    @asynccontextmanager
    async def _unit(self, session: Transaction | None):
        if session is not None:
            with translate_errors():  # Core statements run at once: a lost race fails here, not at the commit
                yield session
            return
        async with transaction(self.sessions) as s:
            yield s

    async def _current_version(self, session: Transaction, aggregate_id: str) -> int:
        t = self.tables.events
        query = select(func.coalesce(func.max(t.c.version), 0)).where(t.c.aggregate_id == aggregate_id)
        return int((await session.execute(query)).scalar_one())

    def _rows(
        self, aggregate_id: str, aggregate_type: str, expected: int,
        events: Sequence[Event], metadata: Mapping[str, Any] | None,
    ) -> list[StoredEvent]:
        now = datetime.now(UTC)
        meta = dict(metadata or {})
        out = []
        for i, event in enumerate(events, start=1):
            name = type(event).type_name
            if not name:
                raise MeshkitError(f"{type(event).__qualname__} has no type_name and cannot be stored")
            out.append(StoredEvent(
                position=0, event_id=uuid.uuid4().hex, aggregate_type=aggregate_type,
                aggregate_id=aggregate_id, version=expected + i, type=name,
                data=event.model_dump(mode="json"), metadata=meta, recorded_at=now,
            ))
        return out

    @staticmethod
    def _envelope(source: str, stored: StoredEvent, event: Event) -> Envelope:
        env = envelope(event, source=source, subject=stored.aggregate_id, id=stored.event_id)
        env.time = stored.recorded_at
        return env

    async def _put_snapshot(self, session: Transaction, snap: Snapshot) -> None:
        t = self.tables.snapshots
        values = {
            "aggregate_id": snap.aggregate_id, "aggregate_type": snap.aggregate_type, "version": snap.version,
            "schema": snap.schema, "state": orjson.dumps(snap.state).decode(),
            "taken_at": (snap.taken_at or datetime.now(UTC)).timestamp(),
        }
        dialect = postgresql if session.bind.dialect.name == "postgresql" else sqlite
        stmt = dialect.insert(t).values(**values)
        stmt = stmt.on_conflict_do_update(
            index_elements=[t.c.aggregate_id],
            set_={k: stmt.excluded[k] for k in values if k != "aggregate_id"},
            # Never replace a newer snapshot with an older one (a slow writer).
            where=t.c.version <= stmt.excluded.version,
        )
        await session.execute(stmt)

    @staticmethod
    def _conflict(aggregate_id: str, expected: int, actual: int) -> Conflict:
        return Conflict(
            f"aggregate {aggregate_id!r} is at version {actual}, not {expected}: "
            "someone else changed it; reload it and try again",
            reason="version_conflict",
            details={"aggregate_id": aggregate_id, "expected": expected, "actual": actual},
        )


def _row(e: StoredEvent) -> dict[str, Any]:
    return {
        "event_id": e.event_id, "aggregate_type": e.aggregate_type, "aggregate_id": e.aggregate_id,
        "version": e.version, "event_type": e.type, "data": orjson.dumps(e.data).decode(),
        "metadata": orjson.dumps(e.metadata).decode(), "recorded_at": e.recorded_at.timestamp(),
    }


def _stored(r: Mapping[str, Any]) -> StoredEvent:
    return StoredEvent(
        position=r["position"], event_id=r["event_id"], aggregate_type=r["aggregate_type"],
        aggregate_id=r["aggregate_id"], version=r["version"], type=r["event_type"],
        data=orjson.loads(r["data"]), metadata=orjson.loads(r["metadata"]), recorded_at=_time(r["recorded_at"]),
    )


def _time(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)


__all__ = ["EventStore", "OutboxWriter", "Snapshot", "StoredEvent"]
