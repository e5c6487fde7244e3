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
    # A database where instances already raced holds several current keys: the latest activated stays
    # current, the next one becomes previous (still published: its tokens verify) unless there is one.
    bind = op.get_bind()
    keys = sa.table("sso_signing_keys", sa.column("kid"), sa.column("state"), sa.column("activated_at"),
                    sa.column("created_at"))
    current = [r[0] for r in bind.execute(sa.select(keys.c.kid).where(keys.c.state == "current")
                                          .order_by(keys.c.activated_at.desc(), keys.c.created_at.desc()))]
    has_previous = bind.execute(sa.select(keys.c.kid).where(keys.c.state == "previous")).first() is not None
    for kid in current[1:]:
        state = "retired" if has_previous else "previous"
        bind.execute(sa.update(keys).where(keys.c.kid == kid).values(state=state))
        has_previous = True
    op.create_index("uq_sso_signing_keys_current", "sso_signing_keys", ["state"], unique=True,
                    postgresql_where=_CURRENT, sqlite_where=_CURRENT)


def downgrade() -> None:
    op.drop_index("uq_sso_signing_keys_current", table_name="sso_signing_keys")
