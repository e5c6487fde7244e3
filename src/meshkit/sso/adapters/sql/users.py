"""Users on SQL."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from meshkit.basis.storage import transaction
from meshkit.sso.adapters.sql.audit import write_audit
from meshkit.sso.adapters.tables import users
from meshkit.sso.domain import AuditEntry, User


class SqlUsers:
    """:class:`~meshkit.sso.app.ports.UserStore` on SQL."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    async def add(self, user: User, audit: AuditEntry) -> None:
        async with transaction(self._sessions) as session:
            await session.execute(insert(users).values(
                id=user.id, email=user.email, password_hash=user.password_hash, disabled=user.disabled,
                tenant=user.tenant, created_at=user.created_at, updated_at=user.updated_at))
            await write_audit(session, audit)

    async def get(self, user_id: str) -> User | None:
        return await self._one(users.c.id == user_id)

    async def by_email(self, email: str) -> User | None:
        return await self._one(users.c.email == email)

    async def _one(self, where) -> User | None:
        async with transaction(self._sessions, write=False) as session:
            row = (await session.execute(select(users).where(where))).mappings().first()
        return _user(row) if row is not None else None

    async def set_password(self, user_id: str, password_hash: str, now: datetime,
                           audit: AuditEntry | None) -> bool:
        async with transaction(self._sessions) as session:
            result = await session.execute(
                update(users).where(users.c.id == user_id).values(password_hash=password_hash, updated_at=now))
            await write_audit(session, audit)
        return result.rowcount == 1  # type: ignore[attr-defined]

    async def set_disabled(self, user_id: str, disabled: bool, now: datetime, audit: AuditEntry) -> bool:
        async with transaction(self._sessions) as session:
            result = await session.execute(
                update(users).where(users.c.id == user_id).values(disabled=disabled, updated_at=now))
            if result.rowcount == 1:  # type: ignore[attr-defined]
                await write_audit(session, audit)
        return result.rowcount == 1  # type: ignore[attr-defined]

    async def list(self, *, after: str | None, limit: int) -> list[User]:
        query = select(users).order_by(users.c.id).limit(limit)
        if after is not None:
            query = query.where(users.c.id > after)
        async with transaction(self._sessions, write=False) as session:
            rows = (await session.execute(query)).mappings().all()
        return [_user(r) for r in rows]


def _user(row) -> User:
    return User(id=row["id"], email=row["email"], password_hash=row["password_hash"], created_at=row["created_at"],
                updated_at=row["updated_at"], disabled=bool(row["disabled"]), tenant=row["tenant"])
