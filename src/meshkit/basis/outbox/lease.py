"""A lease in the service's database: at most one holder per name at a time.

Used so that of several instances only one runs the outbox relay (or a
projection): the holder renews the lease while it works; if it dies, the lease
expires after ``ttl`` seconds and another instance takes over. A holder that
restarts under the same id (the instance id) takes its lease back at once.

Acquiring is one conditional ``UPDATE`` (``holder = me OR expired``) and, when
the row is missing, an ``INSERT ... ON CONFLICT DO NOTHING`` — the same
statements on SQLite and PostgreSQL. Times come from the instances' clocks:
keep them in sync (NTP) and the ttl well above the expected skew.
"""

from __future__ import annotations

import time

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from meshkit.basis.outbox.sql import insert_ignore
from meshkit.basis.outbox.tables import tables_for
from meshkit.basis.storage import transaction


class Lease:
    """The lease ``name`` in ``prefix``'s lease table, asked for by ``holder``."""

    def __init__(
        self, sessions: async_sessionmaker[AsyncSession], *, prefix: str, name: str, holder: str, ttl: float = 10.0
    ) -> None:
        self.sessions = sessions
        self.table = tables_for(prefix).leases
        self.name = name
        self.holder = holder
        self.ttl = ttl
        self._held_until = 0.0

    @property
    def held(self) -> bool:
        """Whether we hold it now, as of the last :meth:`acquire` (with a safety margin)."""
        return time.time() < self._held_until - self.ttl / 4

    async def acquire(self) -> bool:
        """Take or renew the lease; ``True`` if we hold it now. Renewals are skipped while fresh."""
        now = time.time()
        if self._held_until - now > self.ttl * 2 / 3:
            return True
        t = self.table
        expires = now + self.ttl
        async with transaction(self.sessions) as session:
            result = await session.execute(
                update(t)
                .where(t.c.name == self.name, (t.c.holder == self.holder) | (t.c.expires_at < now))
                .values(holder=self.holder, expires_at=expires)
            )
            got = result.rowcount == 1  # type: ignore[attr-defined]
            if not got:
                result = await session.execute(
                    insert_ignore(session, t, {"name": self.name, "holder": self.holder, "expires_at": expires})
                )
                got = result.rowcount == 1  # type: ignore[attr-defined]
        self._held_until = expires if got else 0.0
        return got

    async def release(self) -> None:
        """Give the lease up (on a clean stop), so another instance need not wait for it to expire."""
        if self._held_until == 0.0:
            return
        self._held_until = 0.0
        t = self.table
        async with transaction(self.sessions) as session:
            await session.execute(
                update(t).where(t.c.name == self.name, t.c.holder == self.holder).values(expires_at=0.0)
            )


__all__ = ["Lease"]
