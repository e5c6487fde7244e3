"""Revisions of the catalog schema, oldest first (Alembic ignores this file)."""
