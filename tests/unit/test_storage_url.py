"""basis.storage: choosing the backend by URL, version table names, error translation."""

from __future__ import annotations

import sqlite3

import pytest
from sqlalchemy import exc as sa_exc

from meshkit.basis.errors import ConfigError, Conflict, Internal, Unavailable, Unprocessable
from meshkit.basis.storage import create_engine, default_version_table, parse_url, translate
from meshkit.basis.storage.migrate import alembic_config


@pytest.mark.parametrize("url", ["mysql://root@localhost/shop", "mongodb://x/y", "redis://localhost:6379/0"])
def test_unsupported_scheme_names_url_and_supported_schemes(url):
    with pytest.raises(ConfigError) as info:
        create_engine(url)
    message = info.value.message
    assert url.split("://")[0] in message
    assert "sqlite+aiosqlite:///" in message and "postgresql+asyncpg://" in message
    assert info.value.details["url"] == url


def test_unparsable_url_is_config_error():
    with pytest.raises(ConfigError, match="cannot parse database URL"):
        create_engine("not a url at all")


def test_password_never_echoed():
    with pytest.raises(ConfigError) as info:
        create_engine("mysql://root:s3cret@db/shop")
    assert "s3cret" not in info.value.message
    assert "s3cret" not in str(info.value.details)


@pytest.mark.parametrize(
    ("url", "driver"),
    [
        ("sqlite:///x.db", "sqlite+aiosqlite"),
        ("sqlite+aiosqlite:///x.db", "sqlite+aiosqlite"),
        ("postgres://u@h/db", "postgresql+asyncpg"),
        ("postgresql://u@h/db", "postgresql+asyncpg"),
        ("postgresql+asyncpg://u@h/db", "postgresql+asyncpg"),
    ],
)
def test_shorthands_map_to_async_drivers(url, driver):
    assert parse_url(url).drivername == driver


async def test_sqlite_parent_directory_is_created(tmp_path):
    path = tmp_path / "deep" / "er" / "svc.db"
    engine = create_engine(f"sqlite+aiosqlite:///{path}")
    try:
        assert path.parent.is_dir()
        assert engine.dialect.name == "sqlite"
    finally:
        await engine.dispose()


async def test_postgres_engine_has_pool_settings_and_checkout_check_instead_of_pre_ping():
    engine = create_engine("postgresql+asyncpg://u@127.0.0.1:1/db")  # never connects
    try:
        assert engine.pool._pre_ping is False  # replaced by the checkout check (test_storage_postgres_reconnect)
        assert engine.pool.dispatch.checkout
        assert engine.pool.size() == 10
        assert create_engine("postgresql+asyncpg://u@h/db", pool_size=3).pool.size() == 3
    finally:
        await engine.dispose()


def test_version_table_from_package_or_derived():
    assert default_version_table("meshkit.services.catalog.adapters.migrations") == "alembic_version_catalog"
    # A package without VERSION_TABLE: the name comes from its path.
    assert default_version_table("meshkit.services") == "alembic_version_services"


def test_non_migrations_package_is_config_error():
    with pytest.raises(ConfigError, match="not a migrations package"):
        alembic_config("meshkit.basis")
    with pytest.raises(ConfigError, match="cannot be imported"):
        alembic_config("meshkit.nope.migrations")


def _integrity(message: str, errorname: str) -> sa_exc.IntegrityError:
    orig = sqlite3.IntegrityError(message)
    orig.sqlite_errorname = errorname
    return sa_exc.IntegrityError("INSERT ...", {}, orig)


def test_translate_sqlite_unique_names_fields():
    err = translate(_integrity("UNIQUE constraint failed: t.a, t.b", "SQLITE_CONSTRAINT_UNIQUE"))
    assert isinstance(err, Conflict) and err.reason == "duplicate"
    assert err.details == {"fields": ["a", "b"]}


def test_translate_other_constraints_and_busy():
    assert isinstance(translate(_integrity("CHECK constraint failed: x", "SQLITE_CONSTRAINT_CHECK")), Unprocessable)
    assert translate(_integrity("FOREIGN KEY constraint failed", "SQLITE_CONSTRAINT_FOREIGNKEY")).reason == "reference"
    busy = sqlite3.OperationalError("database is locked")
    busy.sqlite_errorname = "SQLITE_BUSY"
    assert isinstance(translate(sa_exc.OperationalError("UPDATE", {}, busy)), Unavailable)
    unknown = translate(sa_exc.ProgrammingError("SELECT", {}, Exception("syntax error near secret_table")))
    assert isinstance(unknown, Internal) and "secret_table" not in unknown.message
