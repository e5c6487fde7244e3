"""Service accounts and API keys on SQL."""

from __future__ import annotations

from datetime import datetime

import orjson
from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from meshkit.basis.storage import transaction
from meshkit.sso.adapters.sql.audit import write_audit
from meshkit.sso.adapters.tables import api_keys, service_accounts
from meshkit.sso.domain import ApiKey, AuditEntry, ServiceAccount


class SqlMachines:
    """:class:`~meshkit.sso.app.ports.MachineStore` on SQL."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    async def add_account(self, account: ServiceAccount, audit: AuditEntry) -> None:
        async with transaction(self._sessions) as session:
            await session.execute(insert(service_accounts).values(
                id=account.id, name=account.name, secret_hash=account.secret_hash, disabled=account.disabled,
                tenant=account.tenant, created_at=account.created_at))
            await write_audit(session, audit)

    async def account(self, account_id: str) -> ServiceAccount | None:
        async with transaction(self._sessions, write=False) as session:
            row = (await session.execute(
                select(service_accounts).where(service_accounts.c.id == account_id))).mappings().first()
        return _account(row) if row is not None else None

    async def accounts(self) -> list[ServiceAccount]:
        async with transaction(self._sessions, write=False) as session:
            rows = (await session.execute(select(service_accounts).order_by(service_accounts.c.name))).mappings().all()
        return [_account(r) for r in rows]

    async def set_account(self, account_id: str, *, audit: AuditEntry, disabled: bool | None = None,
                          secret_hash: str | None = None) -> bool:
        values: dict = {}
        if disabled is not None:
            values["disabled"] = disabled
        if secret_hash is not None:
            values["secret_hash"] = secret_hash
        async with transaction(self._sessions) as session:
            result = await session.execute(
                update(service_accounts).where(service_accounts.c.id == account_id).values(**values))
            if result.rowcount == 1:  # type: ignore[attr-defined]
                await write_audit(session, audit)
        return result.rowcount == 1  # type: ignore[attr-defined]

    async def add_key(self, key: ApiKey, audit: AuditEntry) -> None:
        async with transaction(self._sessions) as session:
            await session.execute(insert(api_keys).values(
                id=key.id, name=key.name, key_hash=key.key_hash, subject=key.subject,
                scopes=orjson.dumps(key.scopes).decode(), tenant=key.tenant, created_by=key.created_by,
                created_at=key.created_at, expires_at=key.expires_at, revoked_at=key.revoked_at))
            await write_audit(session, audit)

    async def key_by_hash(self, key_hash: str) -> ApiKey | None:
        async with transaction(self._sessions, write=False) as session:
            row = (await session.execute(select(api_keys).where(api_keys.c.key_hash == key_hash))).mappings().first()
        return _key(row) if row is not None else None

    async def keys(self) -> list[ApiKey]:
        async with transaction(self._sessions, write=False) as session:
            rows = (await session.execute(select(api_keys).order_by(api_keys.c.created_at))).mappings().all()
        return [_key(r) for r in rows]

    async def revoke_key(self, key_id: str, now: datetime, audit: AuditEntry) -> bool:
        async with transaction(self._sessions) as session:
            result = await session.execute(update(api_keys).where(api_keys.c.id == key_id,
                                                                  api_keys.c.revoked_at.is_(None))
                                           .values(revoked_at=now))
            if result.rowcount == 1:  # type: ignore[attr-defined]
                await write_audit(session, audit)
        return result.rowcount == 1  # type: ignore[attr-defined]


def _account(r) -> ServiceAccount:
    return ServiceAccount(id=r["id"], name=r["name"], secret_hash=r["secret_hash"], created_at=r["created_at"],
                          disabled=bool(r["disabled"]), tenant=r["tenant"])


def _key(r) -> ApiKey:
    return ApiKey(id=r["id"], name=r["name"], key_hash=r["key_hash"], subject=r["subject"],
                  scopes=orjson.loads(r["scopes"]), created_at=r["created_at"], created_by=r["created_by"],
                  expires_at=r["expires_at"], revoked_at=r["revoked_at"], tenant=r["tenant"])
