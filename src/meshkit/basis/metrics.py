"""Prometheus metrics of one service, in a registry of its own.

Each :class:`ServiceMetrics` owns a ``prometheus_client.CollectorRegistry`` (not
the process-global one), so two services in one process (tests) do not collide.
The request metrics the runtime records are:

- ``http_requests_total{route,method,status}``
- ``http_requests_in_flight``
- ``http_request_duration_seconds{route,status}`` (histogram)

``route`` is the route template (``/items/{id}``), never the raw path, so the
number of series stays bounded; a request that matched no route is
``route="<unmatched>"``. A service adds its own with :meth:`counter`,
:meth:`gauge` and :meth:`histogram`.
"""

from __future__ import annotations

from collections.abc import Sequence

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

#: Histogram buckets in seconds: fine at the low end, where in-cluster calls live.
DURATION_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
UNMATCHED = "<unmatched>"
CONTENT_TYPE = CONTENT_TYPE_LATEST


class ServiceMetrics:
    """A service's metrics registry with the standard request metrics in it."""

    def __init__(self, service: str = "") -> None:
        self.service = service
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests_total = Counter(
            "http_requests_total", "HTTP requests handled.", ("route", "method", "status"), registry=self.registry
        )
        self.in_flight = Gauge("http_requests_in_flight", "HTTP requests being handled.", registry=self.registry)
        self.duration = Histogram(
            "http_request_duration_seconds",
            "Time to handle an HTTP request, seconds.",
            ("route", "status"),
            buckets=DURATION_BUCKETS,
            registry=self.registry,
        )
        # labels() takes a lock and builds a tuple per call; the children for a
        # (route, method, status) are looked up once and kept here.
        self._children: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}

    def observe(self, route: str, method: str, status: int, seconds: float) -> None:
        """Record one finished request."""
        key = (route, method, status)
        children = self._children.get(key)
        if children is None:
            s = str(status)
            children = (self.requests_total.labels(route, method, s), self.duration.labels(route, s))
            self._children[key] = children
        children[0].inc()
        children[1].observe(seconds)

    def counter(self, name: str, documentation: str, labelnames: Sequence[str] = ()) -> Counter:
        """A new counter in this service's registry."""
        return Counter(name, documentation, tuple(labelnames), registry=self.registry)

    def gauge(self, name: str, documentation: str, labelnames: Sequence[str] = ()) -> Gauge:
        """A new gauge in this service's registry."""
        return Gauge(name, documentation, tuple(labelnames), registry=self.registry)

    def histogram(
        self,
        name: str,
        documentation: str,
        labelnames: Sequence[str] = (),
        buckets: Sequence[float] = DURATION_BUCKETS,
    ) -> Histogram:
        """A new histogram in this service's registry."""
        return Histogram(name, documentation, tuple(labelnames), buckets=tuple(buckets), registry=self.registry)

    def render(self) -> bytes:
        """The registry in the Prometheus text format."""
        return generate_latest(self.registry)
