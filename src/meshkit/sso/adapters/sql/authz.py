"""Permissions, roles, grants and who holds which role, on SQL."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import delete, insert, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from meshkit.basis.storage import transaction
from meshkit.sso.adapters.sql.audit import write_audit
from meshkit.sso.adapters.tables import grants, permissions, roles, subject_roles
from meshkit.sso.domain import AuditEntry


class SqlAuthz:
    """:class:`~meshkit.sso.app.ports.AuthzStore` on SQL."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    async def _write(self, statement, audit: AuditEntry | None) -> int:
        async with transaction(self._sessions) as session:
            result = await session.execute(statement)
            if audit is not None and (result.rowcount or 0) > 0:  # type: ignore[attr-defined]
                await write_audit(session, audit)
        return result.rowcount or 0  # type: ignore[attr-defined]

    async def _rows(self, query) -> list[dict[str, Any]]:
        async with transaction(self._sessions, write=False) as session:
            return [dict(r) for r in (await session.execute(query)).mappings().all()]

    async def add_permission(self, name: str, description: str, now: datetime, audit: AuditEntry) -> None:
        await self._write(insert(permissions).values(name=name, description=description, created_at=now), audit)

    async def remove_permission(self, name: str, audit: AuditEntry) -> bool:
        async with transaction(self._sessions) as session:
            gone = (await session.execute(delete(permissions).where(permissions.c.name == name))).rowcount
            if gone:
                await session.execute(delete(grants).where(grants.c.permission == name))
                await write_audit(session, audit)
        return bool(gone)

    async def permissions(self) -> list[dict[str, Any]]:
        return await self._rows(select(permissions.c.name, permissions.c.description).order_by(permissions.c.name))

    async def permission_exists(self, name: str) -> bool:
        return bool(await self._rows(select(permissions.c.name).where(permissions.c.name == name)))

    async def add_role(self, name: str, description: str, now: datetime, audit: AuditEntry) -> None:
        await self._write(insert(roles).values(name=name, description=description, created_at=now), audit)

    async def remove_role(self, name: str, audit: AuditEntry) -> bool:
        async with transaction(self._sessions) as session:
            # Explicit deletes too: SQLite enforces ON DELETE CASCADE only with foreign keys on.
            await session.execute(delete(grants).where(grants.c.role == name))
            await session.execute(delete(subject_roles).where(subject_roles.c.role == name))
            gone = (await session.execute(delete(roles).where(roles.c.name == name))).rowcount
            if gone:
                await write_audit(session, audit)
        return bool(gone)

    async def roles(self) -> list[dict[str, Any]]:
        return await self._rows(select(roles.c.name, roles.c.description).order_by(roles.c.name))

    async def add_grant(self, grant_id: str, role: str, permission: str, condition: str | None, now: datetime,
                        audit: AuditEntry) -> None:
        await self._write(insert(grants).values(id=grant_id, role=role, permission=permission,
                                                condition=condition or "", created_at=now), audit)

    async def remove_grant(self, role: str, grant_id: str, audit: AuditEntry) -> bool:
        return bool(await self._write(delete(grants).where(grants.c.id == grant_id, grants.c.role == role), audit))

    async def grants(self) -> list[dict[str, Any]]:
        rows = await self._rows(select(grants.c.id, grants.c.role, grants.c.permission, grants.c.condition)
                                .order_by(grants.c.role, grants.c.permission, grants.c.id))
        for r in rows:
            r["condition"] = r["condition"] or None
        return rows

    async def assign(self, subject: str, role: str, now: datetime, audit: AuditEntry) -> None:
        await self._write(insert(subject_roles).values(subject=subject, role=role, created_at=now), audit)

    async def unassign(self, subject: str, role: str, audit: AuditEntry) -> bool:
        statement = delete(subject_roles).where(subject_roles.c.subject == subject, subject_roles.c.role == role)
        return bool(await self._write(statement, audit))

    async def roles_of(self, subject: str) -> list[str]:
        rows = await self._rows(select(subject_roles.c.role).where(subject_roles.c.subject == subject)
                                .order_by(subject_roles.c.role))
        return [r["role"] for r in rows]

    async def holders(self, role: str) -> list[str]:
        rows = await self._rows(select(subject_roles.c.subject).where(subject_roles.c.role == role))
        return [r["subject"] for r in rows]
