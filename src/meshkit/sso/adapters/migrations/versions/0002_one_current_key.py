"""sso: at most one signing key is current (instances starting at once each made their own)

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_CURRENT = sa.text("state = 'current'")


def upgrade() -> None:
    op.create_index("uq_sso_signing_keys_current", "sso_signing_keys", ["state"], unique=True,
                    postgresql_where=_CURRENT, sqlite_where=_CURRENT)


def downgrade() -> None:
    op.drop_index("uq_sso_signing_keys_current", table_name="sso_signing_keys")
