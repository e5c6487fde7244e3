"""The storage tests' scratch table: ``things (id INTEGER PRIMARY KEY, name VARCHAR(20) NOT NULL UNIQUE)``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy import Column, Integer, MetaData, String, Table, text
from sqlalchemy.ext.asyncio import AsyncEngine

from meshkit.basis.storage.testing import scratch_engine

metadata = MetaData()
things = Table(
    "things", metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("name", String(20), nullable=False, unique=True),
)


@asynccontextmanager
async def things_engine(url: str) -> AsyncIterator[AsyncEngine]:
    """A scratch engine (see :func:`scratch_engine`) with an empty ``things`` table."""
    async with scratch_engine(url) as engine:
        async with engine.begin() as conn:
            await conn.run_sync(metadata.create_all)
        yield engine


async def names(engine: AsyncEngine) -> list[str]:
    """The names in ``things``, by id."""
    async with engine.connect() as conn:
        return list((await conn.execute(text("SELECT name FROM things ORDER BY id"))).scalars())
