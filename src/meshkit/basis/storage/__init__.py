"""Relational storage: async SQLAlchemy engines chosen by URL, per-service migrations.

::

    engine = create_engine(settings.database)          # sqlite+aiosqlite:/// or postgresql+asyncpg://
    use_database(service, engine, "meshkit.services.catalog.adapters.migrations")
    # = migrate on start, readiness check "database", engine disposed on stop
    sessions = session_factory(engine)
    async with transaction(sessions) as tx:            # commit, or roll back and translate errors
        await tx.execute(insert(table).values(...))    # SQLAlchemy Core statements and results
        after_commit(tx, callback)                     # callback() once it has committed
    add_row = Prepared(insert(table), ("id", "name"))  # a hot write, without SQLAlchemy's execution:
    await add_row.run(tx, (1, "a"))                    # inside a transaction block, like execute
"""

from meshkit.basis.storage.engine import SUPPORTED, create_engine, is_sqlite, parse_url, ping
from meshkit.basis.storage.errors import translate, translate_errors
from meshkit.basis.storage.lifecycle import use_database
from meshkit.basis.storage.migrate import current_revision, default_version_table, migrate
from meshkit.basis.storage.prepared import Prepared
from meshkit.basis.storage.session import session_factory
from meshkit.basis.storage.transactions import Transaction, after_commit, transaction

__all__ = [
    "SUPPORTED",
    "Prepared",
    "Transaction",
    "after_commit",
    "create_engine",
    "current_revision",
    "default_version_table",
    "is_sqlite",
    "migrate",
    "parse_url",
    "ping",
    "session_factory",
    "transaction",
    "translate",
    "translate_errors",
    "use_database",
]
