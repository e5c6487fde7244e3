"""The event store's tables as a reusable migration: call it from your service's own Alembic revision.

Same shape as :mod:`meshkit.basis.outbox.migration` (and usually in the same
revision, since stored events are published through the outbox)::

    # meshkit/services/bank/adapters/migrations/versions/0002_events.py
    from alembic import op
    from meshkit.basis.eventstore import migration as eventstore
    from meshkit.basis.outbox import migration as messaging

    def upgrade() -> None:
        messaging.upgrade(op, "bank")
        eventstore.upgrade(op, "bank")          # bank_events, bank_snapshots

    def downgrade() -> None:
        eventstore.downgrade(op, "bank")
        messaging.downgrade(op, "bank")

The revision is frozen once written: a later change of these tables will come
as a new function here (``upgrade_v2``) that services call from a new revision.
"""

from __future__ import annotations

from typing import Any

from meshkit.basis.eventstore.tables import event_tables
from meshkit.basis.outbox.migration import create_table


def upgrade(op: Any, prefix: str) -> None:
    """Create ``<prefix>_events`` and ``<prefix>_snapshots`` with Alembic's ``op``."""
    for table in event_tables(prefix).all():
        create_table(op, table)


def downgrade(op: Any, prefix: str) -> None:
    """Drop what :func:`upgrade` created."""
    for table in reversed(event_tables(prefix).all()):
        op.drop_table(table.name)


__all__ = ["downgrade", "upgrade"]
