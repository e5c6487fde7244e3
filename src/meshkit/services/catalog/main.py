"""Wiring of the catalog service: ``python -m meshkit.services.catalog.main``.

:func:`build` makes the :class:`~meshkit.basis.service.Service` (engine,
repository, use cases, routes, readiness check, migrations on start) without
starting it; :func:`main` builds the settings from the environment and runs it.
"""

from __future__ import annotations

from meshkit.basis.bus import use_bus
from meshkit.basis.outbox import Outbox, use_outbox
from meshkit.basis.service import Service, run
from meshkit.basis.storage import create_engine, session_factory, use_database
from meshkit.services.catalog.adapters import MIGRATIONS, SqlProductRepository
from meshkit.services.catalog.app import Products
from meshkit.services.catalog.settings import CatalogSettings
from meshkit.services.catalog.transport import routes
from meshkit.services.catalog_sdk.events import EVENTS


def build(settings: CatalogSettings) -> Service:
    """The catalog service for ``settings``: its database is migrated when it starts.

    Product changes are published as ``catalog.product.*`` events on stream
    ``CATALOG`` through the outbox (same transaction as the change); the relay
    runs in every instance, one at a time publishing (database lease).
    """
    engine = create_engine(settings.database)  # no connection yet; a bad URL fails here
    sessions = session_factory(engine)
    outbox = Outbox("catalog", source=settings.name)
    products = Products(SqlProductRepository(sessions, outbox=outbox), max_page=settings.page_size_max)
    service = Service(settings, routes=routes(products), version=settings.version)
    service.state.update(engine=engine, products=products)

    use_database(service, engine, MIGRATIONS)  # before the bus and the outbox: the engine closes last
    # Publishing goes through the outbox: NATS down must not stop writes, so NATS is not required.
    bus = use_bus(service, required=False)
    bus.publishes(*EVENTS)
    use_outbox(service, bus, sessions, outbox=outbox)
    return service


def main() -> None:
    """Run the catalog with settings from the environment until SIGTERM/SIGINT."""
    run(build(CatalogSettings()))


if __name__ == "__main__":
    main()
