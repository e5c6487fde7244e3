"""The transactional outbox: events committed with the change that causes them, published by a relay.

::

    from meshkit.basis.outbox import Outbox, use_outbox

    outbox, relay = use_outbox(service, bus, sessions, prefix="catalog")   # relay runs with the service
    async with transaction(sessions) as session:
        ...                                                                 # the change
        await outbox.add(session, ProductCreated(...), aggregate_id=product_id)

Tables come from :mod:`meshkit.basis.outbox.migration` (call it from your own
Alembic revision). Several instances: one relay publishes at a time (a lease in
the database). ``python -m meshkit.basis.outbox`` runs a relay as its own process.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from meshkit.basis.outbox.lease import Lease
from meshkit.basis.outbox.outbox import Outbox
from meshkit.basis.outbox.relay import Relay
from meshkit.basis.outbox.sql import insert_ignore
from meshkit.basis.outbox.tables import MessagingTables, tables_for

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

    from meshkit.basis.bus import Bus
    from meshkit.basis.service import Service


def use_outbox(
    service: Service,
    bus: Bus,
    sessions: async_sessionmaker[AsyncSession],
    *,
    prefix: str | None = None,
    outbox: Outbox | None = None,
    **relay: Any,
) -> tuple[Outbox, Relay]:
    """An :class:`Outbox` and its :class:`Relay` tied to ``service``: the relay starts after the bus
    connects (call this after :func:`~meshkit.basis.bus.use_bus`) and stops before it closes.

    The lease holder is the instance id, so a restarted instance takes its lease back at once.
    Pass ``outbox`` when the repositories were built with it already; ``relay`` are
    keyword arguments of :class:`Relay` (batch, lease_ttl, poll...).
    """
    outbox = outbox or Outbox(prefix or service.name, source=service.name)
    runner = Relay(outbox, sessions, bus, holder=service.settings.instance_id, metrics=service.metrics, **relay)
    service.state.update(outbox=outbox, relay=runner)

    async def start(_service: Any) -> None:
        await runner.start()

    async def stop(_service: Any) -> None:
        await runner.stop()

    service.on_startup(start)
    service.on_shutdown(stop)
    return outbox, runner


__all__ = ["Lease", "MessagingTables", "Outbox", "Relay", "insert_ignore", "tables_for", "use_outbox"]
