"""product copy, projection checkpoints and leases

Revision ID: 0001
Revises:
Create Date: 2025-01-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from meshkit.basis.outbox import migration

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "storefront_products",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("description", sa.String(), nullable=False),
        sa.Column("sku", sa.String(64), nullable=False),
        sa.Column("amount", sa.String(40), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
    )
    migration.upgrade(op, "storefront", only=("checkpoints", "leases"))


def downgrade() -> None:
    migration.downgrade(op, "storefront", only=("checkpoints", "leases"))
    op.drop_table("storefront_products")
