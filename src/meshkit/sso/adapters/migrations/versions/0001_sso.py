"""sso: users, roles, permissions, grants, service accounts, API keys, refresh tokens, signing keys, audit

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

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "sso_users",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("email", sa.String(254), nullable=False, unique=True),
        sa.Column("password_hash", sa.String(255), nullable=False),
        sa.Column("disabled", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("tenant", sa.String(64)),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
    )
    op.create_table(
        "sso_permissions",
        sa.Column("name", sa.String(128), primary_key=True),
        sa.Column("description", sa.Text(), nullable=False, server_default=""),
        sa.Column("created_at", TS, nullable=False),
    )
    op.create_table(
        "sso_roles",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("description", sa.Text(), nullable=False, server_default=""),
        sa.Column("created_at", TS, nullable=False),
    )
    op.create_table(
        "sso_grants",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("role", sa.String(64), sa.ForeignKey("sso_roles.name", ondelete="CASCADE"), nullable=False),
        sa.Column("permission", sa.String(128), nullable=False),
        sa.Column("condition", sa.String(500), nullable=False, server_default=""),
        sa.Column("created_at", TS, nullable=False),
        sa.UniqueConstraint("role", "permission", "condition", name="uq_sso_grants_rule"),
    )
    op.create_table(
        "sso_subject_roles",
        sa.Column("subject", sa.String(40), primary_key=True),
        sa.Column("role", sa.String(64), sa.ForeignKey("sso_roles.name", ondelete="CASCADE"), primary_key=True),
        sa.Column("created_at", TS, nullable=False),
    )
    op.create_index("ix_sso_subject_roles_role", "sso_subject_roles", ["role"])
    op.create_table(
        "sso_service_accounts",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("name", sa.String(100), nullable=False, unique=True),
        sa.Column("secret_hash", sa.String(64), nullable=False),
        sa.Column("disabled", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("tenant", sa.String(64)),
        sa.Column("created_at", TS, nullable=False),
    )
    op.create_table(
        "sso_api_keys",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("key_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("subject", sa.String(40), nullable=False),
        sa.Column("scopes", sa.Text(), nullable=False),
        sa.Column("tenant", sa.String(64)),
        sa.Column("created_by", sa.String(40), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("expires_at", TS),
        sa.Column("revoked_at", TS),
    )
    op.create_table(
        "sso_refresh_tokens",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("family", sa.String(40), nullable=False),
        sa.Column("subject", sa.String(40), nullable=False),
        sa.Column("issued_at", TS, nullable=False),
        sa.Column("expires_at", TS, nullable=False),
        sa.Column("used_at", TS),
        sa.Column("revoked_at", TS),
        sa.Column("access_jti", sa.String(40), nullable=False),
        sa.Column("access_exp", sa.Float(), nullable=False),
    )
    op.create_index("ix_sso_refresh_tokens_family", "sso_refresh_tokens", ["family"])
    op.create_index("ix_sso_refresh_tokens_subject", "sso_refresh_tokens", ["subject"])
    op.create_table(
        "sso_revocations",
        sa.Column("jti", sa.String(40), primary_key=True),
        sa.Column("exp", sa.Float(), nullable=False),
    )
    op.create_index("ix_sso_revocations_exp", "sso_revocations", ["exp"])
    op.create_table(
        "sso_signing_keys",
        sa.Column("kid", sa.String(40), primary_key=True),
        sa.Column("alg", sa.String(10), nullable=False),
        sa.Column("public_jwk", sa.Text(), nullable=False),
        sa.Column("sealed_private", sa.LargeBinary(), nullable=False),
        sa.Column("state", sa.String(10), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("activated_at", TS),
        sa.Column("retired_at", TS),
    )
    op.create_table(
        "sso_audit",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("at", TS, nullable=False),
        sa.Column("actor", sa.String(40), nullable=False),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("target", sa.String(200), nullable=False),
        sa.Column("details", sa.Text(), nullable=False),
    )
    op.create_index("ix_sso_audit_at", "sso_audit", ["at"])


def downgrade() -> None:
    for table in ("sso_audit", "sso_signing_keys", "sso_revocations", "sso_refresh_tokens", "sso_api_keys",
                  "sso_service_accounts", "sso_subject_roles", "sso_grants", "sso_roles", "sso_permissions",
                  "sso_users"):
        op.drop_table(table)
