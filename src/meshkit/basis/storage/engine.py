"""Async SQLAlchemy engines, chosen by the URL's scheme.

Two backends are supported:

- ``sqlite+aiosqlite:///path/to/file.db`` — the default on one machine. The
  parent directory is created; every connection gets WAL journaling (readers
  never block the writer), a busy timeout (a writer waits for the lock instead
  of failing), foreign keys ON and ``synchronous=NORMAL`` (durable with WAL, much
  cheaper than FULL). SQLAlchemy, not the ``sqlite3`` module, emits BEGIN, so
  transactions (and DDL in migrations) are real; a connection with the execution
  option ``sqlite_begin="immediate"`` takes the write lock up front.
- ``postgresql+asyncpg://user@host/db`` — production. A bounded pool with
  recycling; a connection the server closed is replaced at checkout, not handed
  out (checked locally, pinged only after sitting idle: no round trip per
  transaction).

``sqlite://`` and ``postgresql://`` / ``postgres://`` are accepted as shorthands
for the async drivers above. Anything else is a :class:`ConfigError`.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Any

from sqlalchemy import event, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, DisconnectionError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import StaticPool

from meshkit.basis.errors import ConfigError
from meshkit.basis.storage import sqlite_driver

SUPPORTED = ("sqlite+aiosqlite:///path/to/file.db", "postgresql+asyncpg://user@host:5432/dbname")

#: Milliseconds a SQLite writer waits for the database lock before giving up.
SQLITE_BUSY_TIMEOUT_MS = 5000

_ALIASES = {
    "sqlite": "sqlite+aiosqlite",
    "sqlite+aiosqlite": "sqlite+aiosqlite",
    "postgresql": "postgresql+asyncpg",
    "postgres": "postgresql+asyncpg",
    "postgresql+asyncpg": "postgresql+asyncpg",
}


def create_engine(url: str | URL, *, echo: bool = False, **options: Any) -> AsyncEngine:
    """Build the :class:`AsyncEngine` that ``url`` names; it does not connect yet.

    ``options`` are passed to :func:`sqlalchemy.ext.asyncio.create_async_engine`
    and override meshkit's defaults (e.g. ``pool_size=20`` for PostgreSQL).
    """
    parsed = parse_url(url)
    if parsed.drivername == "sqlite+aiosqlite":
        return _sqlite(parsed, echo, options)
    return _postgres(parsed, echo, options)


def parse_url(url: str | URL) -> URL:
    """Parse and normalise a database URL, or raise :class:`ConfigError` saying what is accepted."""
    shown = _redacted(url)
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError) as exc:
        raise ConfigError(
            f"cannot parse database URL {shown!r}: use one of {', '.join(SUPPORTED)}",
            details={"url": shown, "supported": list(SUPPORTED)},
        ) from exc
    driver = _ALIASES.get(parsed.drivername.lower())
    if driver is None:
        raise ConfigError(
            f"unsupported database URL {shown!r} (scheme {parsed.drivername!r}): "
            f"use one of {', '.join(SUPPORTED)}",
            details={"url": shown, "supported": list(SUPPORTED)},
        )
    return parsed.set(drivername=driver)


def is_sqlite(engine: AsyncEngine) -> bool:
    """Whether ``engine`` talks to SQLite (some statements differ)."""
    return engine.dialect.name == "sqlite"


async def ping(engine: AsyncEngine) -> None:
    """One round trip to the database (a readiness check); raises a meshkit error when it fails."""
    from meshkit.basis.storage.errors import translate_errors

    with translate_errors():
        async with engine.connect() as conn:
            await conn.execute(text("SELECT 1"))


def _redacted(url: str | URL) -> str:
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        # Unparsable: still never echo what may be a password.
        text = str(url)
        if "@" in text and "://" in text:
            scheme, rest = text.split("://", 1)
            return f"{scheme}://***@{rest.rsplit('@', 1)[1]}"
        return text


def _sqlite(url: URL, echo: bool, options: dict[str, Any]) -> AsyncEngine:
    database = url.database or ":memory:"
    in_memory = database == ":memory:" or database.startswith("file::memory:")
    kwargs: dict[str, Any] = {"echo": echo}
    if in_memory:
        # One shared connection, or each checkout would see its own empty database.
        kwargs.update(poolclass=StaticPool, connect_args={"check_same_thread": False})
    else:
        Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        kwargs.update(pool_size=5, max_overflow=5, pool_timeout=30)
    kwargs["module"] = sqlite_driver.dbapi()  # one thread hop per statement (see sqlite_driver)
    kwargs.update(options)
    engine = create_async_engine(url, **kwargs)
    _sqlite_events(engine, wal=not in_memory)
    return engine


def _sqlite_events(engine: AsyncEngine, *, wal: bool) -> None:
    sync_engine = engine.sync_engine

    @event.listens_for(sync_engine, "connect")
    def _on_connect(dbapi_connection, _record) -> None:
        # Hand BEGIN to SQLAlchemy (see _on_begin): the sqlite3 module's own
        # transaction control skips BEGIN for SELECT and DDL.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
            if wal:
                _journal_mode_wal(cursor)
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA synchronous=NORMAL")
        finally:
            cursor.close()

    @event.listens_for(sync_engine, "begin")
    def _on_begin(connection) -> None:
        # A deferred transaction that reads and then writes cannot wait for the
        # write lock (SQLite answers "database is locked" at once, ignoring the
        # busy timeout); writers that read first ask for the lock up front.
        # meshkit's driver sends it with the transaction's first statement (one
        # thread hop for both); another driver (``module=`` option) gets it now.
        mode = connection.get_execution_options().get("sqlite_begin", "deferred")
        statement = "BEGIN IMMEDIATE" if mode == "immediate" else "BEGIN"
        if not sqlite_driver.begin(connection.connection.dbapi_connection, statement):
            connection.exec_driver_sql(statement)


def _journal_mode_wal(cursor: Any) -> None:
    # Switching a database to WAL needs its exclusive lock, and SQLite answers
    # "database is locked" at once, without the busy handler, when another
    # process holds a lock meanwhile (two instances opening a new database
    # together): try again for as long as the busy timeout. Already WAL (every
    # connection after the first): a read, no lock.
    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_MS / 1000
    while True:
        cursor.execute("PRAGMA journal_mode")
        if str(cursor.fetchone()[0]).lower() == "wal":
            return
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
        time.sleep(0.01)  # rare (a new database opened by two processes at once): once per connection


def _postgres(url: URL, echo: bool, options: dict[str, Any]) -> AsyncEngine:
    kwargs: dict[str, Any] = {
        "echo": echo,
        "pool_size": 10,
        "max_overflow": 10,
        "pool_timeout": 10,
        # Instead of SQLAlchemy's pre-ping (BEGIN / SELECT / ROLLBACK: three round
        # trips on every checkout), _postgres_events checks each checkout locally
        # and pings only a connection that sat idle (see there).
        "pool_pre_ping": False,
        "pool_recycle": 1800,
    }
    kwargs.update(options)
    engine = create_async_engine(url, **kwargs)
    if not kwargs["pool_pre_ping"]:
        _postgres_events(engine)
    return engine


def _postgres_events(engine: AsyncEngine) -> None:
    """A dead pooled connection is replaced at checkout, not handed to a request.

    After a server restart, a failover or ``pg_terminate_backend`` the server
    closes the socket, the event loop sees it, and asyncpg marks the connection
    closed: checking that flag costs nothing. A connection idle for more than
    :data:`PG_IDLE_PING_S` is pinged too (a peer that vanished without closing,
    e.g. behind a NAT or a failed host, leaves no such mark). Either way the
    pool discards it and connects anew (``DisconnectionError``), so the caller's
    transaction runs on a live connection.
    """
    sync_engine = engine.sync_engine

    @event.listens_for(sync_engine, "checkin")
    def _on_checkin(_dbapi_connection, record) -> None:
        record.info[_IDLE_SINCE] = time.monotonic()

    @event.listens_for(sync_engine, "checkout")
    def _on_checkout(dbapi_connection, record, _proxy) -> None:
        if dbapi_connection.driver_connection.is_closed():
            raise DisconnectionError("the server closed this pooled connection")
        idle_since = record.info.get(_IDLE_SINCE)
        if idle_since is not None and time.monotonic() - idle_since > PG_IDLE_PING_S:
            try:
                engine.dialect.do_ping(dbapi_connection)
            except Exception as exc:
                raise DisconnectionError(f"a pooled connection failed its ping: {exc}") from exc


#: Seconds a pooled PostgreSQL connection may sit idle before its next checkout pings it.
PG_IDLE_PING_S = 10.0
_IDLE_SINCE = "meshkit.idle_since"
