"""Alembic environment of the catalog: run by ``meshkit.basis.storage.migrate``."""

from meshkit.basis.storage.migrate import run_env

run_env()
