"""The drain gate: counts requests in flight and refuses new ones once a stop began.

On graceful stop the service deregisters, then closes this gate: a request that
arrives afterwards gets 503 ``shutting_down`` with ``Connection: close`` (the
client retries on another instance and drops this connection), while the ones
already inside finish; :meth:`DrainGate.wait_idle` says when they have.
"""

from __future__ import annotations

import asyncio

from meshkit.basis.errors import Unavailable
from meshkit.basis.middleware.asgi import ASGIApp, Receive, Scope, Send


class DrainGate:
    """Always on: the runtime's graceful stop depends on it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.in_flight = 0
        self.draining = False
        self._idle: asyncio.Event | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self.draining:
            raise Unavailable(
                "this instance is shutting down; retry the request (another instance will take it)",
                reason="shutting_down",
                headers={"connection": "close", "retry-after": "1"},
            )
        self.in_flight += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.in_flight -= 1
            if self.in_flight == 0 and self._idle is not None:
                self._idle.set()

    def close(self) -> None:
        """Refuse new requests from now on."""
        self.draining = True

    def open(self) -> None:
        """Accept requests again (a service object started a second time)."""
        self.draining = False
        self._idle = None

    async def wait_idle(self, timeout: float) -> bool:
        """Wait until no request is in flight; ``False`` if ``timeout`` seconds passed first."""
        if self.in_flight == 0:
            return True
        self._idle = asyncio.Event()
        try:
            async with asyncio.timeout(timeout):
                await self._idle.wait()
        except TimeoutError:
            return self.in_flight == 0
        return True
