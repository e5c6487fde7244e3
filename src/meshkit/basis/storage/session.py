"""Sessions and transactions.

A repository holds a :func:`session_factory` and does each unit of work in
``async with transaction(factory) as session:`` — committed when the block
ends, rolled back when it raises, database errors translated on the way out.
Nothing is half-written: either the whole block lands or none of it does.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from meshkit.basis.storage.errors import translate_errors


def session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """A session maker bound to ``engine``.

    ``expire_on_commit=False``: objects stay readable after commit, which is what
    async code needs (no lazy reload outside the session).
    """
    return async_sessionmaker(engine, expire_on_commit=False, autoflush=False)


@asynccontextmanager
async def transaction(
    factory: async_sessionmaker[AsyncSession], *, write: bool = True
) -> AsyncIterator[AsyncSession]:
    """One transaction: commit on success, roll back on any exception.

    ``write=True`` asks SQLite for the write lock at BEGIN (``BEGIN IMMEDIATE``),
    so a transaction that reads before it writes waits its turn (busy timeout)
    instead of failing on the lock upgrade; PostgreSQL ignores the option. Use
    ``write=False`` for read-only work so readers never queue behind writers.
    Database exceptions leave as :mod:`meshkit.basis.errors` (see
    :func:`~meshkit.basis.storage.errors.translate`).
    """
    with translate_errors():
        async with factory() as session:
            if write:
                await session.connection(execution_options={"sqlite_begin": "immediate"})
            try:
                yield session
                await session.commit()
            except BaseException:
                await session.rollback()
                raise
