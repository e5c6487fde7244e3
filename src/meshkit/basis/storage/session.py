"""Sessions and transactions.

A repository holds a :func:`session_factory` and does each unit of work in
``async with transaction(factory) as session:`` — committed when the block
ends, rolled back when it raises, database errors translated on the way out.
Nothing is half-written: either the whole block lands or none of it does.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager, nullcontext
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from meshkit.basis.errors import Unavailable
from meshkit.basis.storage.engine import SQLITE_BUSY_TIMEOUT_MS
from meshkit.basis.storage.errors import translate_errors

#: One writer queue per SQLite pool and event loop (see :func:`_sqlite_writer`).
_WRITERS: weakref.WeakKeyDictionary[Any, tuple[asyncio.AbstractEventLoop, asyncio.Lock]] = (
    weakref.WeakKeyDictionary()
)


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

    On SQLite, write transactions of one process also queue for each other
    in-process (first come, first served) before asking SQLite for its lock, so
    concurrent requests never meet in SQLite's busy handler, which polls with
    sleeps of up to 100 ms; other processes still wait through the busy timeout.
    """
    async with _sqlite_writer(factory) if write else nullcontext():
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


def _sqlite_writer(factory: async_sessionmaker[AsyncSession]) -> AbstractAsyncContextManager[Any]:
    """The in-process writer queue of ``factory``'s SQLite database; a no-op for PostgreSQL."""
    bind = factory.kw.get("bind")
    if bind is None or bind.dialect.name != "sqlite":
        return nullcontext()
    pool = bind.sync_engine.pool  # shared by the engine's execution_options() copies
    loop = asyncio.get_running_loop()
    entry = _WRITERS.get(pool)
    if entry is None or entry[0] is not loop:
        entry = _WRITERS[pool] = (loop, asyncio.Lock())
    return _queued(entry[1])


@asynccontextmanager
async def _queued(lock: asyncio.Lock) -> AsyncIterator[None]:
    # As long as SQLite itself would wait for a writer of another process; a
    # transaction opened inside another write transaction of the same task
    # gets the same answer it would get from SQLite, not a hang.
    try:
        async with asyncio.timeout(SQLITE_BUSY_TIMEOUT_MS / 1000):
            await lock.acquire()
    except TimeoutError:
        raise Unavailable("the database is busy or unreachable; retry shortly", reason="database_unavailable") from None
    try:
        yield
    finally:
        lock.release()
