"""Run a service in-process for tests, with the same lifecycle as :func:`~meshkit.basis.service.run`.

::

    settings = CatalogSettings(port=0, nats_url=nats_server)
    async with running(build_service(settings)) as svc:
        r = await httpx.AsyncClient(base_url=svc.url).get("/readyz")

The service binds a free port (whatever ``settings.port`` says), registers, and
is ready when the block starts; on exit it stops gracefully (deregister, drain,
hooks). ``svc.url`` / ``svc.port`` say where it listens.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from meshkit.basis.service import Service


@contextlib.asynccontextmanager
async def running(service: Service, *, port: int = 0) -> AsyncIterator[Service]:
    """Start ``service`` on a free port (or ``port``); stop it gracefully when the block ends."""
    await service.start(port=port)
    try:
        yield service
    finally:
        await service.stop()


__all__ = ["running"]
