"""Run the gateway: ``python -m meshkit.gateway.main`` (settings from ``GATEWAY_*`` / ``MESHKIT_*``)."""

from __future__ import annotations

import asyncio
import gc
import logging
import signal

from meshkit.gateway.app import Gateway
from meshkit.gateway.settings import GatewaySettings
from meshkit.gateway.workers import Workers, worker_count

log = logging.getLogger("meshkit.gateway")


async def serve_until_signal(settings: GatewaySettings) -> int:
    """Start, wait for SIGTERM/SIGINT, deregister and drain; 0 on a clean stop, 1 on a failed start."""
    gateway = Gateway(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await gateway.start()
    except Exception as exc:
        log.error("gateway failed to start: %s", getattr(exc, "message", exc), exc_info=not hasattr(exc, "message"))
        await gateway.stop(0)
        return 1
    # Everything built at start-up lives as long as the process: keep it out of the
    # collector's way, and collect young objects less often (the hot path makes few cycles).
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 20)
    workers = None
    if settings.worker_index == 0 and worker_count(settings.workers) > 1:
        workers = Workers(worker_count(settings.workers), gateway.port)
        await workers.start()
    await stop.wait()
    log.info("stopping: deregistering and draining for up to %.0f s", settings.drain_timeout)
    if workers is not None:
        await asyncio.gather(gateway.stop(), workers.stop(settings.drain_timeout))
    else:
        await gateway.stop()
    return 0


def main() -> None:
    """Entry point: build settings, configure JSON logs, run on uvloop until a stop signal."""
    settings = GatewaySettings()
    try:
        from meshkit.basis.logs import configure_logging

        configure_logging(settings.log_level, service=settings.name, instance=settings.instance_id)
    except ImportError:  # pragma: no cover - logs module is part of basis
        logging.basicConfig(level=settings.log_level.upper())
    try:
        import uvloop
    except ImportError:  # pragma: no cover
        code = asyncio.run(serve_until_signal(settings))
    else:
        code = uvloop.run(serve_until_signal(settings))
    raise SystemExit(code)


if __name__ == "__main__":
    main()
