"""Request body size limit: 413 before a large body is read, not after.

A declared ``Content-Length`` over the limit is refused at once; a chunked body
is counted as the handler reads it and refused the moment it passes the limit,
so a client cannot make a service buffer an unbounded body.
"""

from __future__ import annotations

from meshkit.basis.errors import PayloadTooLarge
from meshkit.basis.middleware.asgi import ASGIApp, Message, Receive, Scope, Send


class BodyLimit:
    """Refuses request bodies larger than ``max_bytes`` with 413 ``payload_too_large``."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    def _too_large(self) -> PayloadTooLarge:
        return PayloadTooLarge(
            f"the request body is larger than this service accepts ({self.max_bytes} bytes); send less",
            details={"max_bytes": self.max_bytes},
            headers={"connection": "close"},
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope["headers"]:
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = 0
                if declared > self.max_bytes:
                    raise self._too_large()
                break
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise self._too_large()
            return message

        await self.app(scope, counted, send)
