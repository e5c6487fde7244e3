"""The SSO's tables (created by the migrations in ``migrations/``); every name starts with ``sso_``."""

from __future__ import annotations

from sqlalchemy import (
    Boolean,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)

from meshkit.basis.storage.types import UtcDateTime

#: The package holding the SSO's Alembic migrations.
MIGRATIONS = "meshkit.sso.adapters.migrations"

metadata = MetaData()


users = Table(
    "sso_users", metadata,
    Column("id", String(40), primary_key=True),
    Column("email", String(254), nullable=False, unique=True),
    Column("password_hash", String(255), nullable=False),
    Column("disabled", Boolean, nullable=False, default=False),
    Column("tenant", String(64)),
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
)

permissions = Table(
    "sso_permissions", metadata,
    Column("name", String(128), primary_key=True),
    Column("description", Text, nullable=False, default=""),
    Column("created_at", UtcDateTime, nullable=False),
)

roles = Table(
    "sso_roles", metadata,
    Column("name", String(64), primary_key=True),
    Column("description", Text, nullable=False, default=""),
    Column("created_at", UtcDateTime, nullable=False),
)

grants = Table(
    "sso_grants", metadata,
    Column("id", String(40), primary_key=True),
    Column("role", String(64), ForeignKey("sso_roles.name", ondelete="CASCADE"), nullable=False),
    Column("permission", String(128), nullable=False),
    # "" for none: NULLs are distinct in UNIQUE constraints, so a NULL would allow duplicates.
    Column("condition", String(500), nullable=False, default=""),
    Column("created_at", UtcDateTime, nullable=False),
    UniqueConstraint("role", "permission", "condition", name="uq_sso_grants_rule"),
)

subject_roles = Table(
    "sso_subject_roles", metadata,
    Column("subject", String(40), primary_key=True),
    Column("role", String(64), ForeignKey("sso_roles.name", ondelete="CASCADE"), primary_key=True),
    Column("created_at", UtcDateTime, nullable=False),
    Index("ix_sso_subject_roles_role", "role"),
)

service_accounts = Table(
    "sso_service_accounts", metadata,
    Column("id", String(40), primary_key=True),
    Column("name", String(100), nullable=False, unique=True),
    Column("secret_hash", String(64), nullable=False),
    Column("disabled", Boolean, nullable=False, default=False),
    Column("tenant", String(64)),
    Column("created_at", UtcDateTime, nullable=False),
)

api_keys = Table(
    "sso_api_keys", metadata,
    Column("id", String(40), primary_key=True),
    Column("name", String(100), nullable=False),
    Column("key_hash", String(64), nullable=False, unique=True),
    Column("subject", String(40), nullable=False),
    Column("scopes", Text, nullable=False),  # JSON list
    Column("tenant", String(64)),
    Column("created_by", String(40), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("expires_at", UtcDateTime),
    Column("revoked_at", UtcDateTime),
)

refresh_tokens = Table(
    "sso_refresh_tokens", metadata,
    Column("id", String(40), primary_key=True),
    Column("token_hash", String(64), nullable=False, unique=True),
    Column("family", String(40), nullable=False),
    Column("subject", String(40), nullable=False),
    Column("issued_at", UtcDateTime, nullable=False),
    Column("expires_at", UtcDateTime, nullable=False),
    Column("used_at", UtcDateTime),
    Column("revoked_at", UtcDateTime),
    Column("access_jti", String(40), nullable=False),
    Column("access_exp", Float, nullable=False),
    Index("ix_sso_refresh_tokens_family", "family"),
    Index("ix_sso_refresh_tokens_subject", "subject"),
)

revocations = Table(
    "sso_revocations", metadata,
    Column("jti", String(40), primary_key=True),
    Column("exp", Float, nullable=False),
    Index("ix_sso_revocations_exp", "exp"),
)

#: Access tokens issued to service accounts (client credentials): revoked when the account is
#: disabled or its secret rotated (they have no session to end).
machine_tokens = Table(
    "sso_machine_tokens", metadata,
    Column("jti", String(40), primary_key=True),
    Column("subject", String(40), nullable=False),
    Column("exp", Float, nullable=False),
    Index("ix_sso_machine_tokens_subject", "subject"),
)

signing_keys = Table(
    "sso_signing_keys", metadata,
    Column("kid", String(40), primary_key=True),
    Column("alg", String(10), nullable=False),
    Column("public_jwk", Text, nullable=False),
    Column("sealed_private", LargeBinary, nullable=False),
    Column("state", String(10), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("activated_at", UtcDateTime),
    Column("retired_at", UtcDateTime),
    # One current key: of two instances making the first keys at once, the second is refused.
    Index("uq_sso_signing_keys_current", "state", unique=True, postgresql_where=text("state = 'current'"),
          sqlite_where=text("state = 'current'")),
)

audit = Table(
    "sso_audit", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", UtcDateTime, nullable=False),
    Column("actor", String(40), nullable=False),
    Column("action", String(64), nullable=False),
    Column("target", String(200), nullable=False),
    Column("details", Text, nullable=False),  # JSON object
    Index("ix_sso_audit_at", "at"),
)
