"""The storefront's schema migrations (Alembic), applied by the service on start."""

VERSION_TABLE = "alembic_version_storefront"
