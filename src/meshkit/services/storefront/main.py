"""Wiring of the storefront: ``python -m meshkit.services.storefront.main``.

Its product copy is kept by one line — :func:`meshkit.basis.projection.keep_copy`
over the catalog's ``catalog.product.>`` events — and rebuilt from the stream
with ``await service.state["projections"][0].rebuild()``.
"""

from __future__ import annotations

from meshkit.basis.bus import use_bus
from meshkit.basis.projection import keep_copy
from meshkit.basis.service import Service, run
from meshkit.basis.storage import create_engine, session_factory, use_database
from meshkit.services.catalog_sdk.events import PRODUCT_EVENTS
from meshkit.services.storefront.adapters import MIGRATIONS, ProductCopy, product_copy, product_row
from meshkit.services.storefront.settings import StorefrontSettings
from meshkit.services.storefront.transport import routes


def build(settings: StorefrontSettings) -> Service:
    """The storefront for ``settings`` (its database is migrated on start)."""
    engine = create_engine(settings.database)
    sessions = session_factory(engine)
    service = Service(settings, routes=routes(ProductCopy(sessions)), version=settings.version)
    service.state.update(engine=engine)

    use_database(service, engine, MIGRATIONS)
    # The copy is served even while NATS is away (it is stale, not gone).
    bus = use_bus(service, required=False)
    keep_copy(service, bus, sessions, table=product_copy, pattern=PRODUCT_EVENTS, row=product_row)
    return service


def main() -> None:
    """Run the storefront with settings from the environment until SIGTERM/SIGINT."""
    run(build(StorefrontSettings()))


if __name__ == "__main__":
    main()
