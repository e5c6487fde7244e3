"""products

Revision ID: 0001
Revises:
Create Date: 2025-01-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "catalog_products",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("sku", sa.String(64), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("description", sa.Text(), nullable=False, server_default=""),
        sa.Column("price_e4", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_catalog_products"),
        sa.UniqueConstraint("sku", name="uq_catalog_products_sku"),
        sa.CheckConstraint("price_e4 >= 0", name="ck_catalog_products_price_not_negative"),
        sa.CheckConstraint("version >= 1", name="ck_catalog_products_version_positive"),
    )
    op.create_index("ix_catalog_products_currency_id", "catalog_products", ["currency", "id"])
    op.create_index("ix_catalog_products_price_e4", "catalog_products", ["price_e4"])


def downgrade() -> None:
    op.drop_table("catalog_products")
