"""sso: access tokens issued to service accounts, to revoke them with the account or its secret

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "sso_machine_tokens",
        sa.Column("jti", sa.String(40), primary_key=True),
        sa.Column("subject", sa.String(40), nullable=False),
        sa.Column("exp", sa.Float(), nullable=False),
    )
    op.create_index("ix_sso_machine_tokens_subject", "sso_machine_tokens", ["subject"])


def downgrade() -> None:
    op.drop_table("sso_machine_tokens")
