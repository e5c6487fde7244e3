"""The saga tables as a reusable migration: call it from your service's own Alembic revision.

::

    # meshkit/services/orders/adapters/migrations/versions/0003_sagas.py
    from alembic import op
    from meshkit.basis.saga import migration as sagas

    def upgrade() -> None:
        sagas.upgrade(op, "orders")          # orders_saga_instances, orders_saga_steps

    def downgrade() -> None:
        sagas.downgrade(op, "orders")

The revision is frozen once written: a later change of these tables will come
as a new function here (``upgrade_v2``) that services call from a new revision.
"""

from __future__ import annotations

from typing import Any

from meshkit.basis.outbox.migration import create_table
from meshkit.basis.saga.tables import saga_tables


def upgrade(op: Any, prefix: str) -> None:
    """Create ``<prefix>_saga_instances`` and ``<prefix>_saga_steps`` (with their indexes) with ``op``."""
    for table in saga_tables(prefix).all():
        create_table(op, table)


def downgrade(op: Any, prefix: str) -> None:
    """Drop what :func:`upgrade` created."""
    for table in reversed(saga_tables(prefix).all()):
        op.drop_table(table.name)


__all__ = ["downgrade", "upgrade"]
