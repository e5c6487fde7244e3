"""Alembic environment of the SSO: run by ``meshkit.basis.storage.migrate``."""

from meshkit.basis.storage.migrate import run_env

run_env()
