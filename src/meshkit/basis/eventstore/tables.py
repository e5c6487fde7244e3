"""The event store's tables, named with the service's prefix (``<prefix>_events``, ``<prefix>_snapshots``).

- ``<prefix>_events``: one row per event, ``position`` orders the whole store,
  ``(aggregate_id, version)`` is unique — that constraint *is* the optimistic
  concurrency check: of two appends at the same version only one can commit.
- ``<prefix>_snapshots``: the latest snapshot of an aggregate (one row each).

The schema is created by the service's own Alembic migrations through
:mod:`meshkit.basis.eventstore.migration`. Times are float seconds since the
epoch, as in the messaging tables (one portable type on SQLite and PostgreSQL).
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import (
    BigInteger,
    Column,
    Float,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

#: SQLite only auto-increments an INTEGER PRIMARY KEY; PostgreSQL gets a BIGINT identity.
POSITION = BigInteger().with_variant(Integer(), "sqlite")


@dataclass(frozen=True, slots=True)
class EventTables:
    """The two tables of one prefix (and the :class:`MetaData` holding them)."""

    prefix: str
    metadata: MetaData
    events: Table
    snapshots: Table

    def all(self) -> tuple[Table, ...]:
        return (self.events, self.snapshots)


_cache: dict[str, EventTables] = {}


def event_tables(prefix: str) -> EventTables:
    """The event store tables of ``prefix`` (the same objects on every call)."""
    found = _cache.get(prefix)
    if found is not None:
        return found
    if not prefix or not prefix.replace("_", "").isalnum() or not prefix[0].isalpha():
        raise ValueError(f"table prefix {prefix!r} must be letters, digits and '_', starting with a letter")
    md = MetaData()
    p = prefix
    events = Table(
        f"{p}_events", md,
        Column("position", POSITION, primary_key=True, autoincrement=True),
        Column("event_id", String(64), nullable=False, unique=True),
        Column("aggregate_type", String(100), nullable=False),
        Column("aggregate_id", String(200), nullable=False),
        Column("version", Integer, nullable=False),
        Column("event_type", String(200), nullable=False),
        Column("data", Text, nullable=False),
        Column("metadata", Text, nullable=False),
        Column("recorded_at", Float, nullable=False),
        # Also the index that loads an aggregate (aggregate_id, version ascending).
        UniqueConstraint("aggregate_id", "version", name=f"uq_{p}_events_aggregate_version"),
    )
    snapshots = Table(
        f"{p}_snapshots", md,
        Column("aggregate_id", String(200), primary_key=True),
        Column("aggregate_type", String(100), nullable=False),
        Column("version", Integer, nullable=False),
        Column("schema", Integer, nullable=False),
        Column("state", Text, nullable=False),
        Column("taken_at", Float, nullable=False),
    )
    found = EventTables(p, md, events, snapshots)
    _cache[prefix] = found
    return found


__all__ = ["EventTables", "event_tables"]
