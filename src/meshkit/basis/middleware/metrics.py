"""Request metrics: count, in-flight and duration, labelled by route template."""

from __future__ import annotations

import time

from meshkit.basis.metrics import ServiceMetrics
from meshkit.basis.middleware.asgi import ASGIApp, Message, Receive, Scope, Send
from meshkit.basis.middleware.errors import status_of
from meshkit.basis.middleware.route import route_template


class MetricsMiddleware:
    """Records every HTTP request in a :class:`ServiceMetrics`."""

    def __init__(self, app: ASGIApp, metrics: ServiceMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 0
        root_path = scope.get("root_path", "")
        in_flight = self.metrics.in_flight
        in_flight.inc()
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
            in_flight.dec()
            self.metrics.observe(route_template(scope, root_path), scope["method"], status, time.perf_counter() - start)
