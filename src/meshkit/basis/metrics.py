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

from bisect import bisect_left
from collections.abc import Sequence

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

#: Histogram buckets in seconds: fine at the low end, where in-cluster calls live.
DURATION_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
UNMATCHED = "<unmatched>"
CONTENT_TYPE = CONTENT_TYPE_LATEST


class ServiceMetrics:
    """A service's metrics registry with the standard request metrics in it."""

    def __init__(self, service: str = "") -> None:
        self.service = service
        self.registry = CollectorRegistry(auto_describe=True)
        #: Requests being handled now (the middleware counts; read at scrape).
        self.in_flight = 0
        self._bounds = DURATION_BUCKETS
        # (route, method, status) -> [count]; (route, status) -> [bucket counts..., sum, count]
        self._counts: dict[tuple[str, str, int], list[int]] = {}
        self._durations: dict[tuple[str, int], list[float]] = {}
        self.registry.register(_RequestCollector(self))

    def observe(self, route: str, method: str, status: int, seconds: float) -> None:
        """Record one finished request.

        Plain dict and list arithmetic, no locks: called on the event loop thread
        only, where prometheus_client's per-child locks (five per request) were
        most of the metrics step's cost. The collector reads these at scrape time.
        """
        count = self._counts.get((route, method, status))
        if count is None:
            count = self._counts[(route, method, status)] = [0]
        count[0] += 1
        hist = self._durations.get((route, status))
        if hist is None:
            hist = self._durations[(route, status)] = [0.0] * (len(self._bounds) + 3)
        hist[bisect_left(self._bounds, seconds)] += 1  # slot len(bounds) is +Inf
        hist[-2] += seconds
        hist[-1] += 1

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


class _RequestCollector(Collector):
    """Exposes the request counters of a :class:`ServiceMetrics` in Prometheus form."""

    def __init__(self, metrics: ServiceMetrics) -> None:
        self.metrics = metrics

    def describe(self):
        return [
            CounterMetricFamily("http_requests_total", "HTTP requests handled.", labels=("route", "method", "status")),
            GaugeMetricFamily("http_requests_in_flight", "HTTP requests being handled."),
            HistogramMetricFamily(
                "http_request_duration_seconds", "Time to handle an HTTP request, seconds.", labels=("route", "status")
            ),
        ]

    def collect(self):
        m = self.metrics
        total = CounterMetricFamily("http_requests_total", "HTTP requests handled.", labels=("route", "method", "status"))
        for (route, method, status), (count,) in list(m._counts.items()):
            total.add_metric((route, method, str(status)), count)
        duration = HistogramMetricFamily(
            "http_request_duration_seconds", "Time to handle an HTTP request, seconds.", labels=("route", "status")
        )
        bounds = [*(floatToGoString(b) for b in m._bounds), "+Inf"]
        for (route, status), hist in list(m._durations.items()):
            cumulative, running = [], 0
            for le, n in zip(bounds, hist[: len(bounds)], strict=True):
                running += int(n)
                cumulative.append((le, running))
            duration.add_metric((route, str(status)), cumulative, hist[-2])
        yield total
        yield GaugeMetricFamily("http_requests_in_flight", "HTTP requests being handled.", value=m.in_flight)
        yield duration
