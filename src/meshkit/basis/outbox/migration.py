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

from sqlalchemy import Constraint, PrimaryKeyConstraint, Table, UniqueConstraint

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
    """``op.create_table`` for a :class:`Table` defined in code (columns, constraints), then its indexes."""
    columns = [c._copy() for c in table.columns]
    op.create_table(table.name, *columns, *_table_constraints(table))
    for index in table.indexes:
        op.create_index(index.name, table.name, [c.name for c in index.columns], unique=bool(index.unique))


def _table_constraints(table: Table) -> list[Constraint]:
    # Rebuilt from column names: Constraint._copy() would bind the copy to ``table`` itself (adding
    # it to the set being read: "Set changed size during iteration") instead of to the new table.
    return [
        type(c)(*[col.name for col in c.columns], name=c.name)
        for c in table.constraints
        if isinstance(c, (PrimaryKeyConstraint, UniqueConstraint)) and not _column_level(c)
    ]


def _column_level(constraint: PrimaryKeyConstraint | UniqueConstraint) -> bool:
    # An unnamed primary key and a one-column unique constraint are already carried by the column
    # copies (primary_key=True, unique=True); only the others are passed as constraints.
    cols = list(constraint.columns)
    if isinstance(constraint, PrimaryKeyConstraint):
        return all(c.primary_key for c in cols) and constraint.name is None
    return len(cols) == 1 and bool(cols[0].unique)


__all__ = ["NAMES", "create_table", "downgrade", "upgrade"]
