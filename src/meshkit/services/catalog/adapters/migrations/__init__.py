"""The catalog's schema migrations (Alembic), applied by the service on start.

Add one with ``python -m meshkit.basis.storage.migrate meshkit.services.catalog.adapters.migrations "what changes"``.
"""

#: The catalog's own Alembic version table, so it can share a database with other services.
VERSION_TABLE = "alembic_version_catalog"
