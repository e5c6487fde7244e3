"""The audit log: who changed what, when; written in the transaction of the change itself."""

from __future__ import annotations

import orjson
from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from meshkit.basis.storage import Transaction, transaction
from meshkit.sso.adapters.tables import audit
from meshkit.sso.domain import AuditEntry


async def write_audit(session: Transaction, entry: AuditEntry | None) -> None:
    """Add ``entry`` to the audit log inside ``session``'s transaction (nothing for ``None``)."""
    if entry is None:
        return
    await session.execute(insert(audit).values(
        at=entry.at, actor=entry.actor, action=entry.action, target=entry.target,
        details=orjson.dumps(entry.details).decode()))


class SqlAudit:
    """:class:`~meshkit.sso.app.ports.AuditStore` on SQL."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    async def record(self, entry: AuditEntry) -> None:
        async with transaction(self._sessions) as session:
            await write_audit(session, entry)

    async def list(self, *, after: int | None, limit: int) -> list[AuditEntry]:
        query = select(audit).order_by(audit.c.id.desc()).limit(limit)
        if after is not None:
            query = query.where(audit.c.id < after)
        async with transaction(self._sessions, write=False) as session:
            rows = (await session.execute(query)).mappings().all()
        return [AuditEntry(actor=r["actor"], action=r["action"], target=r["target"], at=r["at"],
                           details=orjson.loads(r["details"]), id=r["id"]) for r in rows]
