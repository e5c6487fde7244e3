"""The messaging tables as a reusable migration: call it from your service's own Alembic revision.

meshkit does not create tables behind a service's back: the service's schema
history stays in its migrations. Add one revision::

    # meshkit/services/catalog/adapters/migrations/versions/0002_messaging.py
    from alembic import op
    from meshkit.basis.outbox import migration

    revision, down_revision = "0002", "0001"

    def upgrade() -> None:
        migration.upgrade(op, "catalog")                      # outbox, leases, inbox, checkpoints, idempotency

    def downgrade() -> None:
        migration.downgrade(op, "catalog")

``only=("outbox", "leases")`` creates a subset. The revision is frozen once
written: a later change of these tables will come as a new function here
(``upgrade_v2``) that services call from a new revision.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import Index, Table

from meshkit.basis.outbox.tables import tables_for

NAMES = ("outbox", "leases", "inbox", "checkpoints", "idempotency")


def _chosen(prefix: str, only: Iterable[str] | None) -> list[Table]:
    tables = tables_for(prefix)
    names = list(only) if only is not None else list(NAMES)
    unknown = [n for n in names if n not in NAMES]
    if unknown:
        raise ValueError(f"unknown messaging tables {unknown}: choose from {', '.join(NAMES)}")
    return [getattr(tables, n) for n in names]


def upgrade(op: Any, prefix: str, *, only: Iterable[str] | None = None) -> None:
    """Create the messaging tables of ``prefix`` with Alembic's ``op`` (inside the revision's transaction)."""
    for table in _chosen(prefix, only):
        create_table(op, table)


def downgrade(op: Any, prefix: str, *, only: Iterable[str] | None = None) -> None:
    """Drop what :func:`upgrade` created."""
    for table in reversed(_chosen(prefix, only)):
        op.drop_table(table.name)


def create_table(op: Any, table: Table) -> None:
    """``op.create_table`` for a :class:`Table` defined in code (columns, constraints, indexes)."""
    columns = [c._copy() for c in table.columns]
    constraints = [
        c._copy() for c in table.constraints
        if c.__class__.__name__ in ("PrimaryKeyConstraint", "UniqueConstraint") and not _column_level(c, table)
    ]
    op.create_table(table.name, *columns, *constraints)
    for index in table.indexes:
        _create_index(op, table, index)


def _column_level(constraint: Any, table: Table) -> bool:
    # Single-column primary keys and unique=True columns are already carried by the column copies.
    cols = list(constraint.columns)
    if constraint.__class__.__name__ == "PrimaryKeyConstraint":
        return all(c.primary_key for c in cols) and constraint.name is None
    return len(cols) == 1 and bool(cols[0].unique)


def _create_index(op: Any, table: Table, index: Index) -> None:
    op.create_index(index.name, table.name, [c.name for c in index.columns], unique=bool(index.unique))


__all__ = ["NAMES", "create_table", "downgrade", "upgrade"]
