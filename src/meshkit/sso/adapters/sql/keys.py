"""Signing keys on SQL (private halves sealed by the caller before they get here)."""

from __future__ import annotations

from collections.abc import Mapping

import orjson
from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from meshkit.basis.errors import Conflict
from meshkit.basis.storage import transaction
from meshkit.sso.adapters.sql.audit import write_audit
from meshkit.sso.adapters.tables import signing_keys
from meshkit.sso.domain import AuditEntry, SigningKey


class _Changed(Conflict):
    """A key is no longer in the state the caller read (another instance rotated): roll back."""


class SqlKeys:
    """:class:`~meshkit.sso.app.ports.KeyStore` on SQL."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    async def all(self) -> list[SigningKey]:
        async with transaction(self._sessions, write=False) as session:
            rows = (await session.execute(select(signing_keys).order_by(signing_keys.c.created_at))).mappings().all()
        return [SigningKey(kid=r["kid"], alg=r["alg"], public_jwk=orjson.loads(r["public_jwk"]),
                           sealed_private=bytes(r["sealed_private"]), state=r["state"], created_at=r["created_at"],
                           activated_at=r["activated_at"], retired_at=r["retired_at"]) for r in rows]

    async def save_all(self, keys: list[SigningKey], audit: AuditEntry | None,
                       expected: Mapping[str, str] | None = None) -> bool:
        try:
            async with transaction(self._sessions) as session:
                for kid, state in (expected or {}).items():
                    # Locks the row (PostgreSQL) and checks it: a concurrent rotation is seen, not overwritten.
                    same = await session.execute(update(signing_keys).where(
                        signing_keys.c.kid == kid, signing_keys.c.state == state).values(state=state))
                    if same.rowcount != 1:  # type: ignore[attr-defined]
                        raise _Changed(kid)
                await self._write(session, keys, audit)
        except _Changed:
            return False
        return True

    @staticmethod
    async def _write(session, keys: list[SigningKey], audit: AuditEntry | None) -> None:
        known = {r[0] for r in (await session.execute(select(signing_keys.c.kid))).all()}
        for k in keys:
            values = {"alg": k.alg, "public_jwk": orjson.dumps(k.public_jwk).decode(),
                      "sealed_private": k.sealed_private, "state": k.state, "created_at": k.created_at,
                      "activated_at": k.activated_at, "retired_at": k.retired_at}
            if k.kid in known:
                await session.execute(update(signing_keys).where(signing_keys.c.kid == k.kid).values(**values))
            else:
                await session.execute(insert(signing_keys).values(kid=k.kid, **values))
        await write_audit(session, audit)
