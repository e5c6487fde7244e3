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
    Column,
    Float,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

from meshkit.basis.storage.tables import SEQ, TableSet, prefixed


@dataclass(frozen=True, slots=True)
class EventTables(TableSet):
    """The two tables of one prefix (and the :class:`MetaData` holding them)."""

    prefix: str
    metadata: MetaData
    events: Table
    snapshots: Table


@prefixed
def event_tables(p: str, md: MetaData) -> EventTables:
    """The event store tables of ``prefix`` (the same objects on every call)."""
    events = Table(
        f"{p}_events", md,
        Column("position", SEQ, primary_key=True, autoincrement=True),
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
    return EventTables(p, md, events, snapshots)


__all__ = ["EventTables", "event_tables"]
