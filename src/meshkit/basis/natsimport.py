"""Importing nats-py without its WebSocket transport, for processes that talk plain TCP.

nats-py imports aiohttp at import time for its WebSocket transport (``ws://``),
about 0.07 s of CPU per process; ``meshkit up`` starts five Python processes on
the same cores, so it asks its services to skip it (``MESHKIT_NATS_WEBSOCKET=0``,
set by :func:`meshkit.cli.launch.child_env` unless the NATS URL is ``ws://``).
aiohttp is hidden only while nats-py's transport module loads: a later
``import aiohttp`` (the gateway fetches an ``https://`` JWKS with it) works as usual.
"""

from __future__ import annotations

import sys


def import_without_websocket() -> bool:
    """Import ``nats.aio.transport`` with aiohttp hidden; ``False`` when it is too late or not needed."""
    if "nats.aio.transport" in sys.modules or "aiohttp" in sys.modules:
        return False  # nats-py already has (or will find) aiohttp: nothing to save
    sys.modules["aiohttp"] = None  # type: ignore[assignment]  # makes `import aiohttp` fail
    try:
        import nats.aio.transport  # noqa: F401  (its `except ImportError` leaves WebSocket out)
    finally:
        if sys.modules.get("aiohttp", False) is None:
            del sys.modules["aiohttp"]
    return True
