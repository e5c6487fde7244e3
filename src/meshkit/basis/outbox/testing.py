"""Test support: the messaging tables of a prefix on a scratch database, through the migration helper.

Services create these tables from their Alembic revisions; tests and benchmarks
that have no migrations package call :func:`create_tables` instead (it runs the
same :func:`meshkit.basis.outbox.migration.upgrade` through Alembic's operations).
"""

from __future__ import annotations

from sqlalchemy import MetaData
from sqlalchemy.ext.asyncio import AsyncEngine

from meshkit.basis.outbox import migration


async def create_tables(engine: AsyncEngine, prefix: str, *, extra: MetaData | None = None) -> None:
    """Create ``prefix``'s messaging tables (and the tables of ``extra``) on ``engine``."""
    from alembic.migration import MigrationContext
    from alembic.operations import Operations

    def run(conn) -> None:
        migration.upgrade(Operations(MigrationContext.configure(conn)), prefix)
        if extra is not None:
            extra.create_all(conn)

    async with engine.begin() as conn:
        await conn.run_sync(run)


__all__ = ["create_tables"]
