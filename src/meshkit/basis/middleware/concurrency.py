"""Concurrency cap: at most ``limit`` requests at once; over it, 503 at once.

Shedding instead of queueing: a queued request would wait behind work the
instance cannot finish in time anyway, while a fast 503 lets the caller's
client try another instance (go-zero's ``maxConns`` does the same).
"""

from __future__ import annotations

from meshkit.basis.errors import Unavailable
from meshkit.basis.middleware.asgi import ASGIApp, Receive, Scope, Send


class ConcurrencyLimit:
    """Refuses requests beyond ``limit`` handled at the same time."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        if limit < 1:
            raise ValueError("limit must be at least 1")
        self.app = app
        self.limit = limit
        self.active = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self.active >= self.limit:
            raise Unavailable(
                f"over capacity ({self.limit} requests in progress); retry shortly",
                reason="overloaded",
                headers={"retry-after": "1"},
            )
        self.active += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.active -= 1
