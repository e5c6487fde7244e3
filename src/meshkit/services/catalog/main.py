"""Wiring of the catalog service: ``python -m meshkit.services.catalog.main``.

:func:`build` makes the :class:`~meshkit.basis.service.Service` (engine,
repository, use cases, routes, readiness check, migrations on start) without
starting it; :func:`main` builds the settings from the environment and runs it.
"""

from __future__ import annotations

from meshkit.basis.service import Service, run
from meshkit.basis.storage import create_engine, migrate, ping, session_factory
from meshkit.services.catalog.adapters import MIGRATIONS, SqlProductRepository
from meshkit.services.catalog.app import Products
from meshkit.services.catalog.settings import CatalogSettings
from meshkit.services.catalog.transport import routes


def build(settings: CatalogSettings) -> Service:
    """The catalog service for ``settings``: its database is migrated when it starts."""
    engine = create_engine(settings.database)  # no connection yet; a bad URL fails here
    products = Products(SqlProductRepository(session_factory(engine)), max_page=settings.page_size_max)
    service = Service(settings, routes=routes(products), version=settings.version)
    service.state.update(engine=engine, products=products)

    async def apply_migrations(_service: Service) -> None:
        await migrate(engine, MIGRATIONS)

    async def close_engine(_service: Service) -> None:
        await engine.dispose()

    async def database() -> None:
        await ping(engine)

    service.on_startup(apply_migrations)
    service.on_shutdown(close_engine)
    service.add_check("database", database)
    return service


def main() -> None:
    """Run the catalog with settings from the environment until SIGTERM/SIGINT."""
    run(build(CatalogSettings()))


if __name__ == "__main__":
    main()
