"""Gateway metrics: plain counters on the hot path, Prometheus text at scrape time.

``prometheus_client`` costs a lock and several lookups per observation; here an
observation is a dict increment and a ``bisect`` into a histogram's bucket list.
The text is built only when ``/metrics`` is scraped.
"""

from __future__ import annotations

from bisect import bisect_left

#: Latency buckets in seconds (upper bounds); +Inf is implied.
BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Histogram:
    """Counts per bucket, a sum and a count."""

    __slots__ = ("count", "counts", "sum")

    def __init__(self) -> None:
        self.counts = [0] * (len(BUCKETS) + 1)
        self.sum = 0.0
        self.count = 0

    def observe(self, seconds: float) -> None:
        self.counts[bisect_left(BUCKETS, seconds)] += 1
        self.sum += seconds
        self.count += 1


def _esc(v: str) -> str:
    return v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


class GatewayMetrics:
    """Every gateway metric; one instance per gateway, kept across reloads."""

    def __init__(self) -> None:
        self.requests: dict[tuple[str, str, int], int] = {}
        self.latency: dict[str, Histogram] = {}
        self.upstream_requests: dict[tuple[str, int], int] = {}
        self.upstream_latency: dict[str, Histogram] = {}
        self.upstream_errors: dict[tuple[str, str], int] = {}
        self.cache: dict[tuple[str, str], int] = {}
        self.events: dict[tuple[str, str], int] = {}
        self.in_flight: dict[str, int] = {}
        self.gauges: dict[str, float] = {}

    def request(self, route: str, method: str, status: int, seconds: float) -> None:
        """One answered request (route ``""`` when none matched)."""
        key = (route, method, status)
        r = self.requests
        r[key] = r.get(key, 0) + 1
        h = self.latency.get(route)
        if h is None:
            h = self.latency[route] = Histogram()
        h.counts[bisect_left(BUCKETS, seconds)] += 1  # h.observe(seconds), inlined: once per request
        h.sum += seconds
        h.count += 1

    def upstream(self, upstream: str, status: int, seconds: float) -> None:
        """One answer from an upstream."""
        key = (upstream, status)
        u = self.upstream_requests
        u[key] = u.get(key, 0) + 1
        h = self.upstream_latency.get(upstream)
        if h is None:
            h = self.upstream_latency[upstream] = Histogram()
        h.counts[bisect_left(BUCKETS, seconds)] += 1  # h.observe(seconds), inlined
        h.sum += seconds
        h.count += 1

    def upstream_error(self, upstream: str, kind: str) -> None:
        """A failed upstream call (connect, timeout, closed...)."""
        key = (upstream, kind)
        self.upstream_errors[key] = self.upstream_errors.get(key, 0) + 1

    def cache_result(self, route: str, result: str) -> None:
        key = (route, result)
        self.cache[key] = self.cache.get(key, 0) + 1

    def event(self, route: str, kind: str) -> None:
        """Something worth counting: shed, ratelimited, retry, fault, fallback, stale..."""
        key = (route, kind)
        self.events[key] = self.events.get(key, 0) + 1

    def render(self) -> bytes:
        """The Prometheus text exposition of everything."""
        out: list[str] = []
        out += ["# HELP gateway_requests_total Requests answered by the gateway.",
                "# TYPE gateway_requests_total counter"]
        for (route, method, status), n in sorted(self.requests.items()):
            out.append(f'gateway_requests_total{{route="{_esc(route)}",method="{method}",status="{status}"}} {n}')
        self._hist(out, "gateway_request_duration_seconds", "Time from request parsed to answer sent.",
                   "route", self.latency)
        out += ["# HELP gateway_upstream_requests_total Answers received from upstreams.",
                "# TYPE gateway_upstream_requests_total counter"]
        for (up, status), n in sorted(self.upstream_requests.items()):
            out.append(f'gateway_upstream_requests_total{{upstream="{_esc(up)}",status="{status}"}} {n}')
        self._hist(out, "gateway_upstream_duration_seconds", "Upstream call latency.", "upstream",
                   self.upstream_latency)
        out += ["# HELP gateway_upstream_errors_total Upstream calls that got no answer.",
                "# TYPE gateway_upstream_errors_total counter"]
        for (up, kind), n in sorted(self.upstream_errors.items()):
            out.append(f'gateway_upstream_errors_total{{upstream="{_esc(up)}",kind="{kind}"}} {n}')
        out += ["# HELP gateway_cache_total Cache lookups by result.", "# TYPE gateway_cache_total counter"]
        for (route, result), n in sorted(self.cache.items()):
            out.append(f'gateway_cache_total{{route="{_esc(route)}",result="{result}"}} {n}')
        out += ["# HELP gateway_events_total Shed, rate-limited, retried, fault-injected, fallback requests.",
                "# TYPE gateway_events_total counter"]
        for (route, kind), n in sorted(self.events.items()):
            out.append(f'gateway_events_total{{route="{_esc(route)}",kind="{kind}"}} {n}')
        out += ["# HELP gateway_in_flight Requests being handled per route.", "# TYPE gateway_in_flight gauge"]
        for route, n in sorted(self.in_flight.items()):
            out.append(f'gateway_in_flight{{route="{_esc(route)}"}} {n}')
        for name, value in sorted(self.gauges.items()):
            out += [f"# TYPE {name} gauge", f"{name} {value}"]
        return ("\n".join(out) + "\n").encode()

    @staticmethod
    def _hist(out: list[str], name: str, help_: str, label: str, hists: dict[str, Histogram]) -> None:
        out += [f"# HELP {name} {help_}", f"# TYPE {name} histogram"]
        for key, h in sorted(hists.items()):
            lv = _esc(key)
            acc = 0
            for bound, n in zip(BUCKETS, h.counts, strict=False):
                acc += n
                out.append(f'{name}_bucket{{{label}="{lv}",le="{bound}"}} {acc}')
            out.append(f'{name}_bucket{{{label}="{lv}",le="+Inf"}} {h.count}')
            out.append(f'{name}_sum{{{label}="{lv}"}} {h.sum}')
            out.append(f'{name}_count{{{label}="{lv}"}} {h.count}')
