"""Per-service schema migrations (Alembic), applied by the service on start.

A service ships its migrations inside its package — no ``alembic.ini`` for users::

    meshkit/services/catalog/adapters/migrations/
        __init__.py        # may set VERSION_TABLE = "alembic_version_catalog"
        env.py             # two lines: from meshkit.basis.storage.migrate import run_env; run_env()
        script.py.mako     # template for new revisions
        versions/0001_products.py

and calls ``await migrate(engine, "meshkit.services.catalog.adapters.migrations")``
in its startup. Each service records its revision in its own version table
(``alembic_version_<service>``), so several services can share one PostgreSQL
database or schema. Applying is idempotent (a database at head is left alone)
and safe when several instances start at once: PostgreSQL serialises them on an
advisory lock, SQLite on its write lock (``BEGIN IMMEDIATE``).

To write a new revision during development::

    python -m meshkit.basis.storage.migrate meshkit.services.catalog.adapters.migrations "add tags"
"""

from __future__ import annotations

import asyncio
import importlib
import sys
import weakref
import zlib
from pathlib import Path

from alembic import command, context
from alembic.config import Config
from sqlalchemy import column, inspect, select, text
from sqlalchemy import table as table_
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from meshkit.basis.errors import ConfigError
from meshkit.basis.storage.errors import translate_errors


async def migrate(engine: AsyncEngine, package: str, *, version_table: str | None = None) -> str | None:
    """Upgrade the database behind ``engine`` to the newest revision in ``package``.

    Returns the revision the database is at afterwards. ``version_table``
    defaults to the package's ``VERSION_TABLE``, else ``alembic_version_<name>``
    where ``<name>`` is the package path without its trailing ``adapters.migrations``.
    """
    config = alembic_config(package, version_table=version_table)
    # Alembic keeps its running context in module globals: one migration at a
    # time per process. Other processes are held off by the database lock.
    async with _process_lock():
        with translate_errors():
            async with engine.connect() as conn:
                # The execution option makes SQLite take the write lock at BEGIN.
                await conn.execution_options(sqlite_begin="immediate")
                return await conn.run_sync(_upgrade, config)


async def current_revision(engine: AsyncEngine, package: str, *, version_table: str | None = None) -> str | None:
    """The revision recorded in the service's version table, or ``None`` before the first migration."""
    table = version_table or default_version_table(package)

    with translate_errors():
        async with engine.connect() as conn:
            return await conn.run_sync(_read_revision, table)


def alembic_config(package: str, *, version_table: str | None = None) -> Config:
    """An Alembic :class:`Config` for the migrations in ``package``, without any ini file."""
    location = _package_dir(package)
    config = Config()
    # Config options go through configparser interpolation: a literal % must be doubled.
    config.set_main_option("script_location", str(location).replace("%", "%%"))
    config.attributes["version_table"] = version_table or default_version_table(package)
    return config


def default_version_table(package: str) -> str:
    """``VERSION_TABLE`` from ``package`` if it sets one, else ``alembic_version_<service>``."""
    module = importlib.import_module(package)
    explicit = getattr(module, "VERSION_TABLE", None)
    if explicit:
        return str(explicit)
    parts = package.split(".")
    while parts and parts[-1] in ("migrations", "adapters", "db", "storage"):
        parts.pop()
    return f"alembic_version_{parts[-1] if parts else 'default'}"


def run_env() -> None:
    """The body of every service's ``env.py``: run the migrations on the given connection.

    :func:`migrate` passes its connection in ``config.attributes``; this never
    opens one itself, so there is no URL to configure.
    """
    config = context.config
    connection: Connection | None = config.attributes.get("connection")
    if connection is None:
        raise ConfigError(
            "meshkit migrations run through meshkit.basis.storage.migrate(engine, package), "
            "not the alembic command line with a database URL"
        )
    version_table = config.attributes["version_table"]
    context.configure(
        connection=connection,
        target_metadata=config.attributes.get("target_metadata"),
        version_table=version_table,
        # SQLite cannot ALTER most things; batch mode copies the table instead.
        render_as_batch=connection.dialect.name == "sqlite",
        transactional_ddl=True,
    )
    with context.begin_transaction():
        if connection.dialect.name == "postgresql":
            # Instances starting together: one migrates, the others wait and then find head.
            key = zlib.crc32(version_table.encode()) & 0x7FFFFFFF
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})
        context.run_migrations()


def _upgrade(connection: Connection, config: Config) -> str | None:
    config.attributes["connection"] = connection
    with connection.begin():
        command.upgrade(config, "head")
        return _read_revision(connection, config.attributes["version_table"])


def _read_revision(connection: Connection, table: str) -> str | None:
    if not inspect(connection).has_table(table):
        return None
    rows = connection.execute(select(column("version_num")).select_from(table_(table))).scalars().all()
    # Several heads would be several rows; a service keeps one linear history.
    return ",".join(sorted(rows)) or None


_locks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = weakref.WeakKeyDictionary()


def _process_lock() -> asyncio.Lock:
    loop = asyncio.get_running_loop()
    lock = _locks.get(loop)
    if lock is None:
        lock = _locks[loop] = asyncio.Lock()
    return lock


def _package_dir(package: str) -> Path:
    try:
        module = importlib.import_module(package)
    except ImportError as exc:
        raise ConfigError(f"migrations package {package!r} cannot be imported: {exc}") from exc
    paths = list(getattr(module, "__path__", []))
    if not paths or not (Path(paths[0]) / "env.py").is_file():
        raise ConfigError(f"{package!r} is not a migrations package: it needs an env.py and a versions/ folder")
    return Path(paths[0])


def _revision(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python -m meshkit.basis.storage.migrate <migrations package> <message>", file=sys.stderr)
        return 2
    package, message = argv
    command.revision(alembic_config(package), message=message)
    return 0


if __name__ == "__main__":
    raise SystemExit(_revision(sys.argv[1:]))
