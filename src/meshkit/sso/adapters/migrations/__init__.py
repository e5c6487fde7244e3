"""The SSO's schema migrations (Alembic), applied by the service on start.

Add one with ``python -m meshkit.basis.storage.migrate meshkit.sso.adapters.migrations "what changes"``.
"""

#: The SSO's own Alembic version table, so it can share a database with other services.
VERSION_TABLE = "alembic_version_sso"
