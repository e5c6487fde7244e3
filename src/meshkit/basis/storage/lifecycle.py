"""A service's database over the service's life: migrated on start, checked for readiness, closed on stop."""

from __future__ import annotations

from typing import TYPE_CHECKING

from meshkit.basis.storage.engine import ping
from meshkit.basis.storage.migrate import migrate

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

    from meshkit.basis.service import Service


def use_database(service: Service, engine: AsyncEngine, migrations: str | None = None) -> None:
    """Tie ``engine`` to ``service``: the ``migrations`` package applied on start, readiness check
    ``database``, the engine disposed on stop.

    Call it before wiring what uses the engine (bus consumers, outbox relay, your
    own start-up hook): start-up hooks run in order, so the schema is there
    first, and shutdown hooks run newest first, so the engine closes last.
    """

    async def apply_migrations(_service: Service) -> None:
        await migrate(engine, migrations)

    async def close_engine(_service: Service) -> None:
        await engine.dispose()

    async def database() -> None:
        await ping(engine)

    if migrations is not None:
        service.on_startup(apply_migrations)
    service.on_shutdown(close_engine)
    service.add_check("database", database)


__all__ = ["use_database"]
