"""Machines: service accounts (OAuth2 client credentials) and API keys for third parties.

Client secrets and API keys are 256-bit random strings, shown once when made
and stored only as SHA-256 (enough for a random secret; a slow hash is for
passwords people choose). Lookups hash what was presented and compare hashes in
constant time. An API key looks like ``mk_<id part>_<secret>``; its
``scopes`` are exactly the permissions it carries; while its subject is a
disabled user or service account it is inactive.
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from meshkit.basis.errors import Conflict, NotFound, Unauthorized, Unprocessable
from meshkit.basis.policy import valid_permission
from meshkit.sso.app.ports import MachineStore
from meshkit.sso.app.tokens import token_hash
from meshkit.sso.domain import ApiKey, AuditEntry, ServiceAccount, new_id

_DUMMY = token_hash("not-a-secret")


def _now() -> datetime:
    return datetime.now(UTC)


def invalid_client() -> Unauthorized:
    return Unauthorized("client authentication failed: check client_id and client_secret", reason="invalid_client",
                        headers={"WWW-Authenticate": 'Basic realm="meshkit-sso"'})


class Machines:
    """Service accounts and API keys over a :class:`MachineStore`."""

    def __init__(self, store: MachineStore, *, clock: Callable[[], datetime] = _now,
                 user_disabled: Callable[[str], Awaitable[bool]] | None = None) -> None:
        self._store = store
        self._clock = clock
        #: Whether a subject is a disabled user (an API key acting as one is inactive meanwhile).
        self._user_disabled = user_disabled

    # -- service accounts --------------------------------------------------------------------

    async def create_account(self, name: str, actor: str, *, tenant: str | None = None) -> tuple[ServiceAccount, str]:
        """A new service account and its client secret (returned once, never again)."""
        if not name or len(name) > 100:
            raise Unprocessable("name: 1 to 100 characters", details=[{"loc": "name", "message": "1-100 characters",
                                                                       "type": "invalid"}])
        secret = secrets.token_urlsafe(32)
        now = self._clock()
        account = ServiceAccount(id=new_id("sa"), name=name, secret_hash=token_hash(secret), created_at=now,
                                 tenant=tenant)
        try:
            await self._store.add_account(account, AuditEntry(actor, "service_account.created", account.id, now,
                                                              {"name": name}))
        except Conflict as exc:
            raise Conflict(f"a service account named {name!r} exists already", reason="duplicate_name") from exc
        return account, secret

    async def authenticate(self, client_id: str, secret: str) -> ServiceAccount:
        """The enabled service account these credentials belong to; 401 ``invalid_client`` otherwise."""
        # No id holds a NUL (and PostgreSQL cannot look one up): such a client_id is just unknown.
        known = isinstance(client_id, str) and client_id and "\x00" not in client_id
        account = await self._store.account(client_id) if known else None
        presented = token_hash(secret if isinstance(secret, str) else "")
        good = hmac.compare_digest(account.secret_hash if account else _DUMMY, presented)
        if account is None or not good or account.disabled:
            raise invalid_client()
        return account

    async def rotate_secret(self, account_id: str, actor: str) -> str:
        secret = secrets.token_urlsafe(32)
        ok = await self._store.set_account(account_id, secret_hash=token_hash(secret), audit=AuditEntry(
            actor, "service_account.secret_rotated", account_id, self._clock()))
        if not ok:
            raise NotFound(f"no service account {account_id!r}", reason="service_account_not_found")
        return secret

    async def set_disabled(self, account_id: str, disabled: bool, actor: str) -> None:
        action = "service_account.disabled" if disabled else "service_account.enabled"
        if not await self._store.set_account(account_id, disabled=disabled,
                                             audit=AuditEntry(actor, action, account_id, self._clock())):
            raise NotFound(f"no service account {account_id!r}", reason="service_account_not_found")

    async def account(self, account_id: str) -> ServiceAccount | None:
        return await self._store.account(account_id)

    async def accounts(self) -> list[ServiceAccount]:
        return await self._store.accounts()

    # -- API keys --------------------------------------------------------------------------------

    async def create_key(self, name: str, subject: str, scopes: list[str], actor: str, *,
                         expires_in: float | None = None, tenant: str | None = None) -> tuple[ApiKey, str]:
        """A new API key (the key itself is returned once)."""
        bad = [s for s in scopes if not valid_permission(s, pattern=True)]
        if bad:
            raise Unprocessable(f"scopes {bad} are not permissions",
                                details=[{"loc": "scopes", "message": "use area:action, area:* or *", "type": "invalid"}])
        key_id = new_id("key")
        raw = f"mk_{key_id[4:12]}_{secrets.token_urlsafe(32)}"
        now = self._clock()
        key = ApiKey(id=key_id, name=name, key_hash=token_hash(raw), subject=subject, scopes=sorted(set(scopes)),
                     created_at=now, created_by=actor, tenant=tenant,
                     expires_at=now + timedelta(seconds=expires_in) if expires_in else None)
        await self._store.add_key(key, AuditEntry(actor, "api_key.created", key_id, now,
                                                  {"name": name, "subject": subject, "scopes": key.scopes}))
        return key, raw

    async def revoke_key(self, key_id: str, actor: str) -> None:
        if not await self._store.revoke_key(key_id, self._clock(), AuditEntry(actor, "api_key.revoked", key_id,
                                                                               self._clock())):
            raise NotFound(f"no active API key {key_id!r}", reason="api_key_not_found")

    async def keys(self) -> list[ApiKey]:
        return await self._store.keys()

    async def _subject_disabled(self, subject: str) -> bool:
        account = await self._store.account(subject)
        if account is not None:
            return account.disabled
        return self._user_disabled is not None and await self._user_disabled(subject)

    async def introspect(self, raw: str) -> dict[str, Any]:
        """RFC 7662-style answer for an API key: ``{"active": false}`` unless it is known, live and unexpired."""
        if not isinstance(raw, str) or not raw.startswith("mk_") or len(raw) > 200:
            return {"active": False}
        digest = token_hash(raw)
        key = await self._store.key_by_hash(digest)
        now = self._clock()
        if key is None or not hmac.compare_digest(key.key_hash, digest) or key.revoked_at is not None or (
                key.expires_at is not None and key.expires_at <= now):
            return {"active": False}
        if await self._subject_disabled(key.subject):
            return {"active": False}  # disabling a user or service account stops the keys acting as it
        return {"active": True, "key_id": key.id, "subject": key.subject, "permissions": key.scopes, "roles": [],
                "tenant": key.tenant, "exp": key.expires_at.timestamp() if key.expires_at else None,
                "name": key.name}
