"""Request metrics: count, in-flight and duration, labelled by route template."""

from __future__ import annotations

import time

from meshkit.basis.metrics import ServiceMetrics
from meshkit.basis.middleware.asgi import STATUS_KEY, ASGIApp, Receive, Scope, Send
from meshkit.basis.middleware.errors import status_of
from meshkit.basis.middleware.route import route_template


class MetricsMiddleware:
    """Records every HTTP request in a :class:`ServiceMetrics`.

    Runs inside the context step, which records the response status in the scope.
    """

    def __init__(self, app: ASGIApp, metrics: ServiceMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        root_path = scope.get("root_path", "")
        metrics = self.metrics
        metrics.in_flight += 1
        start = time.perf_counter()
        try:
            await self.app(scope, receive, send)
            status = scope.get(STATUS_KEY, 0)
        except BaseException as exc:
            status = scope.get(STATUS_KEY) or status_of(exc)
            raise
        finally:
            metrics.in_flight -= 1
            metrics.observe(route_template(scope, root_path), scope["method"], status, time.perf_counter() - start)
