"""Alembic environment of the storefront: run by ``meshkit.basis.storage.migrate``."""

from meshkit.basis.storage.migrate import run_env

run_env()
