"""The aiosqlite driver as SQLAlchemy sees it, with one thread hop per statement.

aiosqlite runs each ``sqlite3`` call on the connection's own thread (a busy
database or a checkpoint's fsync never blocks the event loop) and every call is
a hop there and back. SQLAlchemy's stock adapter makes three or four per
statement (open a cursor, execute, fetch, close) and a transaction of one
``INSERT`` took eight: ``BEGIN IMMEDIATE`` (3), the ``INSERT`` (3), ``COMMIT``,
and the pool's rollback-on-return after the commit.

This adapter keeps the thread and does each statement in one hop (cursor,
execute, fetch, close in one call there). ``BEGIN`` is deferred and sent in the
same hop as the transaction's first statement — the lock is still taken before
that statement runs, so ``BEGIN IMMEDIATE`` keeps its meaning — and a
transaction that ran no statement costs no hop at all. Every hop reports whether
SQLite is inside a transaction, so a ``COMMIT`` / ``ROLLBACK`` with nothing to end
(the pool's reset after a commit) is skipped. The same transaction: three hops
(``BEGIN IMMEDIATE`` + ``INSERT``, ``COMMIT``).

Used by :func:`meshkit.basis.storage.engine.create_engine` for every SQLite URL
(``module=dbapi()``); the dialect is SQLAlchemy's own ``sqlite+aiosqlite``.
"""

from __future__ import annotations

import collections
import sqlite3
from collections.abc import Iterator, Sequence
from typing import Any

import aiosqlite
from sqlalchemy.dialects.sqlite.aiosqlite import AsyncAdapt_aiosqlite_connection, AsyncAdapt_aiosqlite_dbapi
from sqlalchemy.util.concurrency import await_only


def _run(
    conn: sqlite3.Connection, begin: str | None, operation: str, parameters: Any, many: bool
) -> tuple[Any, int, int | None, list[Any] | None, bool]:
    """On the connection's thread: the deferred BEGIN if any, then one statement with its rows."""
    if begin is not None:
        conn.execute(begin)
    cursor = conn.cursor()
    try:
        if many:
            cursor.executemany(operation, parameters)
        elif parameters is None:
            cursor.execute(operation)
        else:
            cursor.execute(operation, parameters)
        rows = cursor.fetchall() if cursor.description else None
        return cursor.description, cursor.rowcount, cursor.lastrowid, rows, conn.in_transaction
    finally:
        cursor.close()


def _end(conn: sqlite3.Connection, commit: bool) -> bool:
    if commit:
        conn.commit()
    else:
        conn.rollback()
    return conn.in_transaction


class Cursor:
    """A DB-API cursor whose statements run in one hop each; results are held in memory."""

    __slots__ = ("_conn", "_rows", "arraysize", "description", "lastrowid", "rowcount")

    server_side = False

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self._rows: collections.deque[Any] = collections.deque()
        self.description: Any = None
        self.rowcount = -1
        self.lastrowid: int | None = None
        self.arraysize = 1

    def execute(self, operation: str, parameters: Any = None) -> None:
        self._apply(self._conn._statement(operation, parameters, many=False))

    def executemany(self, operation: str, seq_of_parameters: Any) -> None:
        self._apply(self._conn._statement(operation, seq_of_parameters, many=True))

    def _apply(self, result: tuple[Any, int, int | None, list[Any] | None, bool]) -> None:
        self.description, self.rowcount, self.lastrowid, rows, _ = result
        self._rows = collections.deque(rows) if rows else collections.deque()

    def setinputsizes(self, *inputsizes: Any) -> None:
        pass

    def fetchone(self) -> Any:
        return self._rows.popleft() if self._rows else None

    def fetchmany(self, size: int | None = None) -> Sequence[Any]:
        rows = self._rows
        return [rows.popleft() for _ in range(min(size or self.arraysize, len(rows)))]

    def fetchall(self) -> Sequence[Any]:
        rows = list(self._rows)
        self._rows.clear()
        return rows

    def __iter__(self) -> Iterator[Any]:
        while self._rows:
            yield self._rows.popleft()

    def close(self) -> None:
        self._rows.clear()

    async def _async_soft_close(self) -> None:
        """SQLAlchemy's async results call this to free the cursor early; rows are already here."""

    def __enter__(self) -> Cursor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Connection(AsyncAdapt_aiosqlite_connection):
    """SQLAlchemy's adapted aiosqlite connection with one-hop statements and a deferred BEGIN."""

    __slots__ = ("_begin", "_in_transaction")

    def __init__(self, dbapi: Any, connection: aiosqlite.Connection) -> None:
        super().__init__(dbapi, connection)
        self._begin: str | None = None
        self._in_transaction = True  # unknown until the first hop reports it

    def defer_begin(self, statement: str = "BEGIN") -> None:
        """Open a transaction with ``statement`` (``BEGIN`` / ``BEGIN IMMEDIATE``), sent with the next statement."""
        if self._begin is not None:
            raise sqlite3.OperationalError("cannot start a transaction within a transaction")
        self._begin = statement

    def cursor(self, server_side: bool = False) -> Any:
        if server_side:  # streams rows with a hop per fetch; any deferred BEGIN goes first
            self._flush_begin()
            self._in_transaction = True  # its statements do not report the state
            return super().cursor(server_side=True)
        return Cursor(self)

    def _statement(self, operation: str, parameters: Any, *, many: bool) -> Any:
        begin, self._begin = self._begin, None
        self._in_transaction = True  # until this hop says otherwise (also if it fails)
        try:
            conn = self._connection._conn  # ValueError when closed, raised as OperationalError below
            result = await_only(self._connection._execute(_run, conn, begin, operation, parameters, many))
        except Exception as error:
            self._handle_exception(error)
        self._in_transaction = result[4]
        return result

    async def run(self, operation: str, parameters: Sequence[Any]) -> int:
        """``operation`` (a statement returning no rows) in one hop, awaited here rather than through
        SQLAlchemy's execution (see :mod:`meshkit.basis.storage.prepared`); its rowcount."""
        begin, self._begin = self._begin, None
        self._in_transaction = True  # until this hop says otherwise (also if it fails)
        try:
            conn = self._connection._conn
            result = await self._connection._execute(_run, conn, begin, operation, parameters, False)
        except Exception as error:
            self._handle_exception(error)
        self._in_transaction = result[4]
        return result[1]

    def _flush_begin(self) -> None:
        if self._begin is not None:
            self._statement("SELECT 1", None, many=False)

    def _finish(self, commit: bool) -> None:
        if self._begin is not None:  # BEGIN never sent: no statement ran, nothing to end
            self._begin = None
            return
        if not self._in_transaction or not self._connection._connection:
            return
        self._in_transaction = True
        try:
            conn = self._connection._conn
            self._in_transaction = await_only(self._connection._execute(_end, conn, commit))
        except Exception as error:
            self._handle_exception(error)

    def commit(self) -> None:
        self._finish(True)

    def rollback(self) -> None:
        self._finish(False)

    @property
    def isolation_level(self) -> str | None:
        return self._connection.isolation_level

    @isolation_level.setter
    def isolation_level(self, value: str | None) -> None:
        self._flush_begin()
        self._in_transaction = True
        AsyncAdapt_aiosqlite_connection.isolation_level.fset(self, value)  # type: ignore[attr-defined]

    def create_function(self, *args: Any, **kw: Any) -> None:
        self._flush_begin()
        super().create_function(*args, **kw)


class DBAPI(AsyncAdapt_aiosqlite_dbapi):
    """The DB-API module SQLAlchemy's ``sqlite+aiosqlite`` dialect is given (``module=``)."""

    def connect(self, *arg: Any, **kw: Any) -> Connection:
        creator_fn = kw.pop("async_creator_fn", None)
        connection = creator_fn(*arg, **kw) if creator_fn else aiosqlite.connect(*arg, **kw)
        if not creator_fn:
            connection._thread.daemon = True
        return Connection(self, await_only(connection))


def dbapi() -> DBAPI:
    """A fresh DB-API module object for one engine."""
    return DBAPI(aiosqlite, sqlite3)


def begin(dbapi_connection: Any, statement: str) -> bool:
    """Defer ``statement`` on ``dbapi_connection`` if it is this driver's; False when the caller must send it."""
    if isinstance(dbapi_connection, Connection):
        dbapi_connection.defer_begin(statement)
        return True
    return False


__all__ = ["DBAPI", "Connection", "Cursor", "begin", "dbapi"]
