"""basis.storage.migrate on real engines: idempotent, per-service version tables, concurrent starts."""

from __future__ import annotations

import asyncio
import sys

import pytest
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text

from helpers.migrations import write_migrations
from meshkit.basis.errors import ConfigError
from meshkit.basis.storage import create_engine, current_revision, migrate
from meshkit.basis.storage.migrate import alembic_config
from meshkit.basis.storage.testing import scratch_engine

CATALOG = "meshkit.services.catalog.adapters.migrations"
#: The catalog's newest revision: the tests follow the service as it gains migrations.
HEAD = ScriptDirectory.from_config(alembic_config(CATALOG)).get_current_head()


@pytest.fixture
async def engine(database_url):
    async with scratch_engine(database_url) as engine:
        yield engine


@pytest.fixture
def other_service(tmp_path, monkeypatch):
    """A second service's migrations package (``ledger``), importable from tmp_path."""
    name = f"ledger_{tmp_path.name.replace('-', '_')}"
    package = write_migrations(
        tmp_path / "pkgs", f"{name}.adapters.migrations", "a1",
        imports="""
            import sqlalchemy as sa
            from alembic import op
        """,
        upgrade='op.create_table("ledger_entries", sa.Column("id", sa.Integer, primary_key=True))',
        downgrade='op.drop_table("ledger_entries")',
    )
    monkeypatch.syspath_prepend(str(tmp_path / "pkgs"))
    yield package, name
    for mod in [m for m in sys.modules if m.startswith(name)]:
        del sys.modules[mod]


async def _tables(engine) -> set[str]:
    async with engine.connect() as conn:
        return set(await conn.run_sync(lambda c: inspect(c).get_table_names()))


async def test_migrate_creates_schema_and_is_idempotent(engine):
    assert await current_revision(engine, CATALOG) is None
    assert await migrate(engine, CATALOG) == HEAD
    assert {"catalog_products", "alembic_version_catalog"} <= await _tables(engine)
    # A second start finds the database at head and changes nothing.
    assert await migrate(engine, CATALOG) == HEAD
    async with engine.connect() as conn:
        rows = (await conn.execute(text("SELECT version_num FROM alembic_version_catalog"))).all()
    assert [r[0] for r in rows] == [HEAD]
    assert await current_revision(engine, CATALOG) == HEAD


async def test_two_services_share_one_database_with_their_own_version_tables(engine, other_service):
    package, name = other_service
    assert await migrate(engine, CATALOG) == HEAD
    assert await migrate(engine, package) == "a1"
    tables = await _tables(engine)
    assert {"alembic_version_catalog", f"alembic_version_{name}", "catalog_products", "ledger_entries"} <= tables
    # Each is at its own head; neither sees the other's revision as unknown.
    assert await migrate(engine, CATALOG) == HEAD
    assert await current_revision(engine, package) == "a1"


async def test_migrations_in_one_process_are_serialised(engine):
    # Three engines (say three services in one test process) on one database:
    # Alembic's module-level context must not be entered twice at once.
    url = engine.url
    options = {}
    if engine.dialect.name == "postgresql":
        search_path = await _search_path(engine)
        options["connect_args"] = {"server_settings": {"search_path": search_path}}
    engines = [create_engine(url, **options) for _ in range(3)]
    try:
        revisions = await asyncio.gather(*(migrate(e, CATALOG) for e in engines))
    finally:
        for e in engines:
            await e.dispose()
    assert revisions == [HEAD] * 3
    assert "catalog_products" in await _tables(engine)


_INSTANCE = """
import asyncio, sys
from meshkit.basis.storage import create_engine, migrate

async def main(url, search_path):
    options = {"connect_args": {"server_settings": {"search_path": search_path}}} if search_path else {}
    engine = create_engine(url, **options)
    print(await migrate(engine, "meshkit.services.catalog.adapters.migrations"))
    await engine.dispose()

asyncio.run(main(sys.argv[1], sys.argv[2]))
"""


async def test_instances_in_separate_processes_starting_together_migrate_once(engine):
    # Real instances are processes: the database lock (PostgreSQL advisory lock,
    # SQLite BEGIN IMMEDIATE) makes one migrate while the other waits and finds head.
    search_path = await _search_path(engine) if engine.dialect.name == "postgresql" else ""
    url = engine.url.render_as_string(hide_password=False)
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable, "-c", _INSTANCE, url, search_path,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
        for _ in range(2)
    ]
    outputs = [await p.communicate() for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [err.decode()[-2000:] for _, err in outputs]
    assert [out.decode().strip() for out, _ in outputs] == [HEAD, HEAD]
    async with engine.connect() as conn:
        rows = (await conn.execute(text("SELECT version_num FROM alembic_version_catalog"))).all()
    assert [r[0] for r in rows] == [HEAD]


async def test_alembic_command_line_without_meshkit_is_refused(tmp_path):
    from alembic import command

    from meshkit.basis.storage.migrate import alembic_config

    with pytest.raises(ConfigError, match=r"migrate\(engine, package\)"):
        command.upgrade(alembic_config(CATALOG), "head")


async def _search_path(engine) -> str:
    async with engine.connect() as conn:
        return (await conn.execute(text("SHOW search_path"))).scalar_one()
