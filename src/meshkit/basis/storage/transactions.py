"""Transactions: ``async with transaction(sessions) as tx:`` — committed when the block ends,
rolled back when it raises, database errors translated on the way out.

::

    async with transaction(sessions) as tx:
        row = (await tx.execute(select(t).where(t.c.id == 1))).first()
        await tx.execute(update(t).where(t.c.id == 1).values(n=row.n + 1))
        after_commit(tx, wake_someone)     # runs once the commit succeeded

Nothing is half-written: either the whole block lands or none of it does.

A :class:`Transaction` is one pooled connection with one transaction open on
it, driven by SQLAlchemy Core (``Connection``): statements, results and errors
are SQLAlchemy's, exactly as ``AsyncSession.execute`` gives them for Core
statements, which is all meshkit's repositories use. It costs two trips into
SQLAlchemy's synchronous world per transaction (connect + begin, commit +
close) and one per statement. An ORM ``AsyncSession`` (which ``transaction``
yielded until 2026-12) adds more trips and its unit-of-work bookkeeping: an
empty write transaction took 385 Python calls on SQLite and 335 on PostgreSQL,
against 202 and 139 now.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy import Connection, Engine, Executable, Result, ScalarResult, event
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.orm import Session
from sqlalchemy.util.concurrency import greenlet_spawn

from meshkit.basis.errors import ConfigError, Unavailable
from meshkit.basis.storage.engine import SQLITE_BUSY_TIMEOUT_MS
from meshkit.basis.storage.errors import translate_errors

#: One writer queue per SQLite pool and event loop (see :func:`_sqlite_writer`).
_WRITERS: weakref.WeakKeyDictionary[Any, tuple[asyncio.AbstractEventLoop, asyncio.Lock]] = (
    weakref.WeakKeyDictionary()
)
#: Per engine: its copy that opens SQLite transactions with BEGIN IMMEDIATE (see engine.py).
_IMMEDIATE: weakref.WeakKeyDictionary[Engine, Engine] = weakref.WeakKeyDictionary()
_AFTER_COMMIT = "meshkit.after_commit"


class Transaction:
    """One open transaction on one connection; what :func:`transaction` yields.

    ``execute`` / ``scalar`` / ``scalars`` take SQLAlchemy Core statements (and
    ``text()``) with their parameters — a dict, or a list of dicts for many rows —
    and return SQLAlchemy results whose rows are already fetched. ``bind`` is the
    engine (``tx.bind.dialect.name`` says which database), ``info`` a dict that
    lives as long as the transaction.
    """

    __slots__ = ("_callbacks", "bind", "info", "sync_connection")

    def __init__(self, sync_connection: Connection, bind: AsyncEngine) -> None:
        self.sync_connection = sync_connection
        self.bind = bind
        self.info: dict[Any, Any] = {}
        self._callbacks: dict[Callable[[], None], None] = {}

    @property
    def dialect(self) -> Dialect:
        """The database's SQLAlchemy dialect."""
        return self.sync_connection.dialect

    async def execute(
        self, statement: Executable, params: Any = None, *, execution_options: dict[str, Any] | None = None
    ) -> Result[Any]:
        """Run ``statement`` in this transaction; its result (rows fetched, ``rowcount`` for writes)."""
        if execution_options:
            return await greenlet_spawn(
                self.sync_connection.execute, statement, params, execution_options=execution_options
            )
        return await greenlet_spawn(self.sync_connection.execute, statement, params)

    async def scalar(self, statement: Executable, params: Any = None) -> Any:
        """The first column of the first row, or ``None``."""
        return (await self.execute(statement, params)).scalar()

    async def scalars(self, statement: Executable, params: Any = None) -> ScalarResult[Any]:
        """The first column of every row."""
        return (await self.execute(statement, params)).scalars()

    def _committed(self) -> None:
        callbacks, self._callbacks = self._callbacks, {}
        for callback in callbacks:
            callback()


@asynccontextmanager
async def transaction(
    factory: async_sessionmaker[AsyncSession] | AsyncEngine, *, write: bool = True
) -> AsyncIterator[Transaction]:
    """One transaction on ``factory``'s engine: commit on success, roll back on any exception.

    ``factory`` is what :func:`~meshkit.basis.storage.session_factory` made (or
    the engine itself). ``write=True`` asks SQLite for the write lock at BEGIN
    (``BEGIN IMMEDIATE``), so a transaction that reads before it writes waits its
    turn (busy timeout) instead of failing on the lock upgrade; PostgreSQL
    ignores the option. Use ``write=False`` for read-only work so readers never
    queue behind writers. Database exceptions leave as :mod:`meshkit.basis.errors`
    (see :func:`~meshkit.basis.storage.errors.translate`).

    On SQLite, write transactions of one process also queue for each other
    in-process (first come, first served) before asking SQLite for its lock, so
    concurrent requests never meet in SQLite's busy handler, which polls with
    sleeps of up to 100 ms; other processes still wait through the busy timeout.
    """
    engine = _engine_of(factory)
    lock = _sqlite_writer(engine) if write else None
    if lock is not None:
        await _acquire(lock)
    try:
        with translate_errors():
            sync_engine = _immediate(engine.sync_engine) if write else engine.sync_engine
            connection = await greenlet_spawn(_open, sync_engine)
            tx = Transaction(connection, engine)
            try:
                yield tx
            except BaseException:
                await greenlet_spawn(_end, connection, False)
                raise
            await greenlet_spawn(_end, connection, True)
        tx._committed()
    finally:
        if lock is not None:
            lock.release()


def after_commit(tx: Transaction | AsyncSession, callback: Callable[[], None]) -> None:
    """Call ``callback()`` once after ``tx`` commits; never if it rolls back.

    The same callback registered several times in one transaction runs once. It
    runs right after the commit, before ``transaction``'s block returns: keep it
    short and non-blocking (set an event, count something); an exception it
    raises is the committer's. An ORM ``AsyncSession`` of your own works too (its
    next commit).
    """
    if isinstance(tx, Transaction):
        tx._callbacks[callback] = None
    else:
        tx.sync_session.info.setdefault(_AFTER_COMMIT, {})[callback] = None


@event.listens_for(Session, "after_commit")
def _run_after_commit(session: Session) -> None:
    callbacks = session.info.pop(_AFTER_COMMIT, None)
    if callbacks:
        for callback in callbacks:
            callback()


@event.listens_for(Session, "after_soft_rollback")
def _drop_after_commit(session: Session, _previous: Any) -> None:
    session.info.pop(_AFTER_COMMIT, None)


def _open(engine: Engine) -> Connection:
    connection = engine.connect()
    try:
        connection.begin()
    except BaseException:
        connection.close()
        raise
    return connection


def _end(connection: Connection, commit: bool) -> None:
    try:
        if commit:
            connection.commit()
        else:
            connection.rollback()
    finally:
        connection.close()


def _engine_of(factory: async_sessionmaker[AsyncSession] | AsyncEngine) -> AsyncEngine:
    if isinstance(factory, AsyncEngine):
        return factory
    bind = factory.kw.get("bind")
    if not isinstance(bind, AsyncEngine):
        raise ConfigError("transaction() needs a session factory bound to one engine (see session_factory)")
    return bind


def _immediate(engine: Engine) -> Engine:
    """``engine`` with ``sqlite_begin="immediate"`` (a copy sharing its pool), made once."""
    copy = _IMMEDIATE.get(engine)
    if copy is None:
        copy = _IMMEDIATE[engine] = engine.execution_options(sqlite_begin="immediate")
    return copy


def _sqlite_writer(engine: AsyncEngine) -> asyncio.Lock | None:
    """The in-process writer queue of ``engine``'s SQLite database; ``None`` for PostgreSQL."""
    if engine.dialect.name != "sqlite":
        return None
    pool = engine.sync_engine.pool  # shared by the engine's execution_options() copies
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


__all__ = ["Transaction", "after_commit", "transaction"]
