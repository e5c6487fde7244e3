"""Refresh tokens (one row per token, grouped in families) and revoked access-token ids, on SQL."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, func, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from meshkit.basis.errors import Conflict
from meshkit.basis.storage import transaction
from meshkit.sso.adapters.sql.audit import write_audit
from meshkit.sso.adapters.tables import machine_tokens, refresh_tokens, revocations
from meshkit.sso.domain import AuditEntry, RefreshToken

_FIELDS = ("id", "token_hash", "family", "subject", "issued_at", "expires_at", "access_jti", "access_exp",
           "used_at", "revoked_at")


class SqlTokens:
    """:class:`~meshkit.sso.app.ports.TokenStore` on SQL."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    async def add(self, token: RefreshToken, audit: AuditEntry | None = None) -> None:
        async with transaction(self._sessions) as session:
            await session.execute(insert(refresh_tokens).values({f: getattr(token, f) for f in _FIELDS}))
            await write_audit(session, audit)

    async def by_hash(self, token_hash: str) -> RefreshToken | None:
        async with transaction(self._sessions, write=False) as session:
            row = (await session.execute(
                select(refresh_tokens).where(refresh_tokens.c.token_hash == token_hash))).mappings().first()
        return RefreshToken(**{f: row[f] for f in _FIELDS}) if row is not None else None

    async def family_started(self, family: str) -> datetime | None:
        async with transaction(self._sessions, write=False) as session:
            return await session.scalar(
                select(func.min(refresh_tokens.c.issued_at)).where(refresh_tokens.c.family == family))

    async def use(self, token_id: str, now: datetime, successor: RefreshToken | None = None) -> bool:
        # Conditional update: of two concurrent uses exactly one sees rowcount 1. The successor is
        # stored in the same transaction: a failure leaves the old token unused, to be retried.
        statement = (update(refresh_tokens)
                     .where(refresh_tokens.c.id == token_id, refresh_tokens.c.used_at.is_(None),
                            refresh_tokens.c.revoked_at.is_(None))
                     .values(used_at=now))
        async with transaction(self._sessions) as session:
            result = await session.execute(statement)
            won = result.rowcount == 1  # type: ignore[attr-defined]
            if won and successor is not None:
                await session.execute(insert(refresh_tokens).values({f: getattr(successor, f) for f in _FIELDS}))
        return won

    async def revoke_family(self, family: str, now: datetime, audit: AuditEntry | None) -> list[tuple[str, float]]:
        async with transaction(self._sessions) as session:
            rows = (await session.execute(select(refresh_tokens.c.access_jti, refresh_tokens.c.access_exp)
                                          .where(refresh_tokens.c.family == family))).all()
            await session.execute(update(refresh_tokens)
                                  .where(refresh_tokens.c.family == family, refresh_tokens.c.revoked_at.is_(None))
                                  .values(revoked_at=now))
            await write_audit(session, audit)
        return [(jti, exp) for jti, exp in rows]

    async def families(self, subject: str) -> list[str]:
        async with transaction(self._sessions, write=False) as session:
            rows = (await session.execute(select(refresh_tokens.c.family).distinct()
                                          .where(refresh_tokens.c.subject == subject,
                                                 refresh_tokens.c.revoked_at.is_(None)))).all()
        return [r[0] for r in rows]

    async def add_issued(self, jti: str, subject: str, exp: float, audit: AuditEntry | None = None) -> None:
        async with transaction(self._sessions) as session:
            await session.execute(insert(machine_tokens).values(jti=jti, subject=subject, exp=exp))
            await write_audit(session, audit)

    async def issued(self, subject: str, now: float) -> list[tuple[str, float]]:
        async with transaction(self._sessions, write=False) as session:
            rows = (await session.execute(select(machine_tokens.c.jti, machine_tokens.c.exp).where(
                machine_tokens.c.subject == subject, machine_tokens.c.exp > now))).all()
        return [(jti, exp) for jti, exp in rows]

    async def add_revocation(self, jti: str, exp: float) -> None:
        try:
            async with transaction(self._sessions) as session:
                await session.execute(insert(revocations).values(jti=jti, exp=exp))
        except Conflict:
            pass  # already revoked: nothing to add

    async def revocations(self, now: float) -> list[tuple[str, float]]:
        async with transaction(self._sessions, write=False) as session:
            rows = (await session.execute(select(revocations.c.jti, revocations.c.exp)
                                          .where(revocations.c.exp > now))).all()
        return [(jti, exp) for jti, exp in rows]

    async def prune(self, now: datetime, now_epoch: float) -> int:
        """Forget refresh tokens past their expiry, revocations of expired access tokens, expired machine tokens."""
        async with transaction(self._sessions) as session:
            a = (await session.execute(delete(refresh_tokens).where(
                or_(refresh_tokens.c.expires_at < now)))).rowcount
            b = (await session.execute(delete(revocations).where(revocations.c.exp < now_epoch))).rowcount
            c = (await session.execute(delete(machine_tokens).where(machine_tokens.c.exp < now_epoch))).rowcount
        return (a or 0) + (b or 0) + (c or 0)
