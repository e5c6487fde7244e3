"""Load and save aggregates of one type through an :class:`EventStore`.

::

    accounts = EventSourcedRepository(store, Account, snapshot_every=100)
    account = await accounts.load("a-1")         # snapshot (if any) + the events after it
    account.handle(Deposit(amount=5))
    await accounts.save(account)                 # Conflict(version_conflict) if someone saved first

``save`` appends the pending events with the version the aggregate was loaded
at as the expected version, and — when the new version crosses a multiple of
``snapshot_every`` — writes a snapshot in the same transaction, so loading
never replays more than ``snapshot_every - 1`` events past the snapshot plus
those of one save.

A snapshot is only a shortcut: one of another ``snapshot_schema``, one that lacks
an attribute the aggregate's ``__init__`` now sets (its shape changed and the
schema was not bumped), and one whose restore fails are ignored, and the
aggregate is rebuilt from all its events.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, Generic, TypeVar

from meshkit.basis.errors import NotFound
from meshkit.basis.eventstore.aggregate import Aggregate
from meshkit.basis.eventstore.store import EventStore, Snapshot, StoredEvent
from meshkit.basis.storage import Transaction

A = TypeVar("A", bound=Aggregate)

logger = logging.getLogger("meshkit.eventstore")


class EventSourcedRepository(Generic[A]):
    """Aggregates of ``aggregate_cls`` kept in ``store``; snapshots every ``snapshot_every`` events (0: never)."""

    def __init__(self, store: EventStore, aggregate_cls: type[A], *, snapshot_every: int = 100) -> None:
        if snapshot_every < 0:
            raise ValueError("snapshot_every must be >= 0 (0 turns snapshots off)")
        self.store = store
        self.aggregate_cls = aggregate_cls
        self.snapshot_every = snapshot_every

    async def load(self, aggregate_id: str) -> A:
        """The aggregate rebuilt from its snapshot and events; :class:`NotFound` when it has none."""
        aggregate = await self.get(aggregate_id)
        if aggregate is None:
            raise NotFound(
                f"no {self.aggregate_cls.aggregate_type} with id {aggregate_id!r}",
                details={"aggregate_type": self.aggregate_cls.aggregate_type, "id": aggregate_id},
            )
        return aggregate

    async def get(self, aggregate_id: str) -> A | None:
        """Like :meth:`load`, but ``None`` when the aggregate has no events."""
        cls = self.aggregate_cls
        aggregate: A | None = None
        if self.snapshot_every:
            snap = await self.store.snapshot(aggregate_id)
            # A snapshot of another state shape is ignored: replaying is always correct.
            if snap is not None and self._fits(snap):
                try:
                    aggregate = cls.from_snapshot(aggregate_id, snap.version, snap.state)
                except Exception as exc:
                    logger.warning("%s %s: snapshot at version %d not restored (%s: %s); replaying every event",
                                   cls.aggregate_type, aggregate_id, snap.version, type(exc).__name__, exc)
        events = await self.store.load(aggregate_id, after_version=aggregate.version if aggregate else 0)
        if aggregate is None:
            if not events:
                return None
            aggregate = cls(aggregate_id)
        aggregate.replay(cls.decode(e.type, e.data) for e in events)
        return aggregate

    def _fits(self, snap: Snapshot) -> bool:
        cls = self.aggregate_cls
        if snap.schema != cls.snapshot_schema or snap.aggregate_type != cls.aggregate_type:
            return False
        # The schema number says the shape is the same; the keys can say it is not (a new attribute).
        missing = set(cls(snap.aggregate_id).snapshot_state()) - set(snap.state)
        if missing:
            logger.warning("%s %s: snapshot at version %d lacks %s (bump snapshot_schema when the state changes); "
                           "replaying every event", cls.aggregate_type, snap.aggregate_id, snap.version, sorted(missing))
        return not missing

    async def save(
        self,
        aggregate: A,
        *,
        metadata: Mapping[str, Any] | None = None,
        session: Transaction | None = None,
    ) -> list[StoredEvent]:
        """Append the aggregate's pending events (and a snapshot when due); then clear them.

        ``session`` saves inside the caller's transaction. On a version
        conflict nothing is written and the pending events stay, so the caller
        can inspect them; reload and re-run the command to retry.
        """
        pending = aggregate.pending_events
        if not pending:
            return []
        expected = aggregate.saved_version
        snapshot = None
        if self.snapshot_every and expected // self.snapshot_every != aggregate.version // self.snapshot_every:
            snapshot = Snapshot(
                aggregate_id=aggregate.id,
                aggregate_type=aggregate.aggregate_type,
                version=aggregate.version,
                schema=aggregate.snapshot_schema,
                state=aggregate.snapshot_state(),
            )
        stored = await self.store.append(
            aggregate.id,
            pending,
            expected_version=expected,
            aggregate_type=aggregate.aggregate_type,
            metadata=metadata,
            snapshot=snapshot,
            session=session,
        )
        aggregate.pending_events = []
        return stored


__all__ = ["EventSourcedRepository"]
