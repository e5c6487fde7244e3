"""One access-log line per request: method, route, path, status, duration.

Written at ``info`` to the ``meshkit.access`` logger after the request ends,
while the request context is still bound, so the line carries the request and
trace ids like every other log line of that request.
"""

from __future__ import annotations

import logging
import time

from meshkit.basis.logs import ACCESS_LOGGER
from meshkit.basis.middleware.asgi import ASGIApp, Message, Receive, Scope, Send
from meshkit.basis.middleware.errors import status_of
from meshkit.basis.middleware.route import route_template

logger = logging.getLogger(ACCESS_LOGGER)


class AccessLogMiddleware:
    """Logs each finished HTTP request."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not logger.isEnabledFor(logging.INFO):
            await self.app(scope, receive, send)
            return
        status = 0
        root_path = scope.get("root_path", "")
        start = time.perf_counter()

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        except BaseException as exc:
            status = status or status_of(exc)
            raise
        finally:
            ms = (time.perf_counter() - start) * 1000.0
            method, path = scope["method"], scope["path"]
            # makeRecord + handle: logger.info would also walk the stack for the caller's
            # file and line, which an access line does not need.
            record = logger.makeRecord(
                ACCESS_LOGGER, logging.INFO, "", 0, "%s %s %d", (method, path, status), None,
                extra={
                    "method": method,
                    "route": route_template(scope, root_path),
                    "path": path,
                    "status": status,
                    "duration_ms": round(ms, 3),
                },
            )
            logger.handle(record)
