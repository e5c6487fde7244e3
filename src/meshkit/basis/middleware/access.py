"""One access-log line per request: method, route, path, status, duration.

Written at ``info`` to the ``meshkit.access`` logger after the request ends,
while the request context is still bound, so the line carries the request and
trace ids like every other log line of that request.
"""

from __future__ import annotations

import logging
import time

from meshkit.basis.logs import ACCESS_LOGGER, log_fields
from meshkit.basis.middleware.asgi import STATUS_KEY, ASGIApp, Receive, Scope, Send
from meshkit.basis.middleware.errors import status_of
from meshkit.basis.middleware.route import route_template

logger = logging.getLogger(ACCESS_LOGGER)


class AccessLogMiddleware:
    """Logs each finished HTTP request.

    Runs inside the context step, which records the response status in the scope.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not logger.isEnabledFor(logging.INFO):
            await self.app(scope, receive, send)
            return
        root_path = scope.get("root_path", "")
        start = time.perf_counter()
        try:
            await self.app(scope, receive, send)
            status = scope.get(STATUS_KEY, 0)
        except BaseException as exc:
            status = scope.get(STATUS_KEY) or status_of(exc)
            raise
        finally:
            ms = (time.perf_counter() - start) * 1000.0
            method, path = scope["method"], scope["path"]
            log_fields(logger, logging.INFO, f"{method} {path} {status}", {
                "method": method,
                "route": route_template(scope, root_path),
                "path": path,
                "status": status,
                "duration_ms": round(ms, 3),
            })
