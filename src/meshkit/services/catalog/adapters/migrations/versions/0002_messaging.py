"""messaging: outbox and leases (meshkit.basis.outbox)

Revision ID: 0002
Revises: 0001
Create Date: 2025-01-02
"""

from __future__ import annotations

from alembic import op

from meshkit.basis.outbox import migration

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    migration.upgrade(op, "catalog", only=("outbox", "leases"))


def downgrade() -> None:
    migration.downgrade(op, "catalog", only=("outbox", "leases"))
