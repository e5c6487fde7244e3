"""Sessions and transactions.

A repository holds a :func:`session_factory` and does each unit of work in
``async with transaction(factory) as session:`` — committed when the block
ends, rolled back when it raises, database errors translated on the way out.
Nothing is half-written: either the whole block lands or none of it does.
:func:`after_commit` runs a callback once the session's transaction has
committed (never after a rollback): the outbox wakes its relay with it.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.orm import Session

from meshkit.basis.errors import Unavailable
from meshkit.basis.storage.engine import SQLITE_BUSY_TIMEOUT_MS
from meshkit.basis.storage.errors import translate_errors

#: One writer queue per SQLite pool and event loop (see :func:`_sqlite_writer`).
_WRITERS: weakref.WeakKeyDictionary[Any, tuple[asyncio.AbstractEventLoop, asyncio.Lock]] = (
    weakref.WeakKeyDictionary()
)
_AFTER_COMMIT = "meshkit.after_commit"


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
    lock = _sqlite_writer(factory) if write else None
    if lock is not None:
        await _acquire(lock)
    try:
        with translate_errors():
            async with factory() as session:
                if write:
                    await session.connection(execution_options=_IMMEDIATE)
                try:
                    yield session
                    await session.commit()
                except BaseException:
                    await session.rollback()
                    raise
    finally:
        if lock is not None:
            lock.release()


_IMMEDIATE = {"sqlite_begin": "immediate"}


def after_commit(session: AsyncSession, callback: Callable[[], None]) -> None:
    """Call ``callback()`` once after ``session``'s current transaction commits; never if it rolls back.

    The same callback registered several times in one transaction runs once.
    It runs inside the commit call, so keep it short and non-blocking (set an
    event, count something); an exception it raises is the committer's.
    """
    session.sync_session.info.setdefault(_AFTER_COMMIT, {})[callback] = None


@event.listens_for(Session, "after_commit")
def _run_after_commit(session: Session) -> None:
    callbacks = session.info.pop(_AFTER_COMMIT, None)
    if callbacks:
        for callback in callbacks:
            callback()


@event.listens_for(Session, "after_soft_rollback")
def _drop_after_commit(session: Session, _previous: Any) -> None:
    session.info.pop(_AFTER_COMMIT, None)


def _sqlite_writer(factory: async_sessionmaker[AsyncSession]) -> asyncio.Lock | None:
    """The in-process writer queue of ``factory``'s SQLite database; ``None`` for PostgreSQL."""
    bind = factory.kw.get("bind")
    if bind is None or bind.dialect.name != "sqlite":
        return None
    pool = bind.sync_engine.pool  # shared by the engine's execution_options() copies
    entry = _WRITERS.get(pool)
    loop = asyncio.get_running_loop()
    if entry is None or entry[0] is not loop:
        entry = _WRITERS[pool] = (loop, asyncio.Lock())
    return entry[1]


async def _acquire(lock: asyncio.Lock) -> None:
    # As long as SQLite itself would wait for a writer of another process; a
    # transaction opened inside another write transaction of the same task
    # gets the same answer it would get from SQLite, not a hang.
    if not lock.locked() and not lock._waiters:  # free and nobody queued: taken at once, no timer needed
        await lock.acquire()
        return
    try:
        async with asyncio.timeout(SQLITE_BUSY_TIMEOUT_MS / 1000):
            await lock.acquire()
    except TimeoutError:
        raise Unavailable("the database is busy or unreachable; retry shortly", reason="database_unavailable") from None
