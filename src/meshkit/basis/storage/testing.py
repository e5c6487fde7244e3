"""Test support: an engine on an empty database, on either backend.

::

    async with scratch_engine(url) as engine:     # url from a fixture: SQLite file or PostgreSQL database
        await migrate(engine, "meshkit.services.catalog.adapters.migrations")
        ...

For PostgreSQL each call makes a new schema (and drops it afterwards), so tests
sharing one database never see each other's tables; SQLite uses the file given.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from meshkit.basis.storage.engine import create_engine, parse_url


@asynccontextmanager
async def scratch_engine(url: str, **options: Any) -> AsyncIterator[AsyncEngine]:
    """An :class:`AsyncEngine` on an empty schema of the database at ``url``; cleaned up on exit."""
    parsed = parse_url(url)
    if parsed.drivername.startswith("sqlite"):
        engine = create_engine(parsed, **options)
        try:
            yield engine
        finally:
            await engine.dispose()
        return

    import asyncpg

    schema = f"scratch_{os.urandom(5).hex()}"
    dsn = parsed.set(drivername="postgresql").render_as_string(hide_password=False)
    admin = await asyncpg.connect(dsn)
    try:
        await admin.execute(f'CREATE SCHEMA "{schema}"')
        connect_args = dict(options.pop("connect_args", {}))
        connect_args.setdefault("server_settings", {})["search_path"] = schema
        engine = create_engine(parsed, connect_args=connect_args, **options)
        try:
            yield engine
        finally:
            await engine.dispose()
            await admin.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await admin.close()
