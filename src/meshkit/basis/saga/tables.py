"""The saga tables, named with the service's prefix: ``<prefix>_saga_instances`` and ``<prefix>_saga_steps``.

- ``<prefix>_saga_instances``: one row per saga — its status, the cursor
  (``step``: the next step to run, or while compensating the next step to
  undo), its data (JSON), and the lease (``lease_owner``, ``lease_until``,
  ``fence``) that lets one orchestrator at a time drive it.
- ``<prefix>_saga_steps``: the step log, one row per transition (an action or
  compensation started, succeeded, failed...). Attempts are counted from it, so
  a crash in the middle of a step still counts as an attempt.

The schema is created by the service's own Alembic migrations through
:mod:`meshkit.basis.saga.migration`. Times are float seconds since the epoch.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Column, Float, Index, Integer, MetaData, String, Table, Text

from meshkit.basis.storage.tables import SEQ, TableSet, prefixed


@dataclass(frozen=True, slots=True)
class SagaTables(TableSet):
    """The two tables of one prefix (and the :class:`MetaData` holding them)."""

    prefix: str
    metadata: MetaData
    instances: Table
    steps: Table


@prefixed
def saga_tables(p: str, md: MetaData) -> SagaTables:
    """The saga tables of ``prefix`` (the same objects on every call)."""
    instances = Table(
        f"{p}_saga_instances", md,
        Column("id", String(100), primary_key=True),
        Column("name", String(100), nullable=False),
        Column("status", String(16), nullable=False),
        Column("step", Integer, nullable=False),
        Column("data", Text, nullable=False),
        Column("error", Text, nullable=True),
        Column("lease_owner", String(200), nullable=True),
        Column("lease_until", Float, nullable=False),
        # Incremented by every claim: a driver whose fence is stale can no longer write.
        Column("fence", Integer, nullable=False),
        Column("created_at", Float, nullable=False),
        Column("updated_at", Float, nullable=False),
        Index(f"ix_{p}_saga_instances_status_lease", "status", "lease_until"),
    )
    steps = Table(
        f"{p}_saga_steps", md,
        Column("seq", SEQ, primary_key=True, autoincrement=True),
        Column("saga_id", String(100), nullable=False),
        Column("step", String(100), nullable=False),
        Column("phase", String(16), nullable=False),
        Column("event", String(16), nullable=False),
        Column("attempt", Integer, nullable=False),
        Column("detail", Text, nullable=True),
        Column("owner", String(200), nullable=True),
        Column("at", Float, nullable=False),
        Index(f"ix_{p}_saga_steps_saga", "saga_id", "seq"),
    )
    return SagaTables(p, md, instances, steps)


__all__ = ["SagaTables", "saga_tables"]
