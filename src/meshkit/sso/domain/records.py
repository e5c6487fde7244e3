"""What the SSO keeps: users, service accounts, API keys, refresh tokens, signing keys, audit entries.

Plain values; the use cases in ``app`` create and change them, the adapters
store them. Secrets never appear here: only their hashes (argon2id for
passwords, SHA-256 for high-entropy random secrets) and sealed private keys.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


def new_id(prefix: str) -> str:
    """A random, URL-safe id with a readable prefix (``usr_``, ``sa_``, ``key_``...)."""
    return f"{prefix}_{secrets.token_hex(10)}"


@dataclass(slots=True)
class User:
    """A person who logs in with an e-mail address and a password."""

    id: str
    email: str
    password_hash: str
    created_at: datetime
    updated_at: datetime
    disabled: bool = False
    tenant: str | None = None


@dataclass(slots=True)
class ServiceAccount:
    """A machine that gets tokens with the client-credentials grant (``id`` is the ``client_id``)."""

    id: str
    name: str
    secret_hash: str
    created_at: datetime
    disabled: bool = False
    tenant: str | None = None


@dataclass(slots=True)
class ApiKey:
    """A third party's key: stored as its SHA-256; ``scopes`` are the permissions it carries."""

    id: str
    name: str
    key_hash: str
    subject: str
    scopes: list[str]
    created_at: datetime
    created_by: str
    expires_at: datetime | None = None
    revoked_at: datetime | None = None
    tenant: str | None = None


@dataclass(slots=True)
class RefreshToken:
    """One refresh token of a session (``family``): used once, then replaced.

    ``access_jti``/``access_exp`` name the access token issued with it, so
    revoking the family can revoke those too.
    """

    id: str
    token_hash: str
    family: str
    subject: str
    issued_at: datetime
    expires_at: datetime
    access_jti: str
    access_exp: float
    used_at: datetime | None = None
    revoked_at: datetime | None = None


@dataclass(slots=True)
class SigningKey:
    """A token-signing key. ``state``: ``next`` (published, not signing yet), ``current``
    (signing), ``previous`` (published, verifying tokens in flight), ``retired``."""

    kid: str
    alg: str
    public_jwk: dict[str, Any]
    sealed_private: bytes
    state: str
    created_at: datetime
    activated_at: datetime | None = None
    retired_at: datetime | None = None


@dataclass(slots=True)
class AuditEntry:
    """Who did what to what, when (``details`` never holds a secret)."""

    actor: str
    action: str
    target: str
    at: datetime
    details: dict[str, Any] = field(default_factory=dict)
    id: int | None = None


__all__ = ["ApiKey", "AuditEntry", "RefreshToken", "ServiceAccount", "SigningKey", "User", "new_id"]
