"""Traffic splitting math, the bulkhead, and the metrics text."""

from __future__ import annotations

import asyncio
import random

import pytest

from meshkit.basis.errors import Unavailable
from meshkit.gateway.config import Canary, Upstream
from meshkit.gateway.guard import Guard
from meshkit.gateway.metrics import GatewayMetrics
from meshkit.gateway.split import choose_subset, in_canary


@pytest.mark.parametrize("percent", [1.0, 10.0, 33.3, 50.0, 90.0])
def test_random_split_follows_the_share(percent):
    rng = random.Random(7)
    n = 20_000
    hits = sum(in_canary(percent, None, rng.random) for _ in range(n))
    assert abs(hits / n * 100 - percent) < 1.0


@pytest.mark.parametrize("percent", [5.0, 20.0, 50.0])
def test_sticky_split_follows_the_share_and_is_stable(percent):
    users = [f"user-{i}" for i in range(20_000)]
    first = [in_canary(percent, u) for u in users]
    assert abs(sum(first) / len(users) * 100 - percent) < 1.0
    assert first == [in_canary(percent, u) for u in users]  # same user, same side, every time


def test_edges_and_subset_keys():
    assert not in_canary(0, "u") and in_canary(100, "u")
    assert choose_subset(Upstream(service="s"), None, "1.2.3.4") is None
    assert choose_subset(Upstream(service="s", version="2.0"), None, "1.2.3.4") == "2.0"
    up = Upstream(service="s", canary=Canary(version="2.0", percent=100))
    assert choose_subset(up, None, "c") == "2.0"
    up = Upstream(service="s", canary=Canary(version="2.0", percent=0))
    assert choose_subset(up, None, "c") == "!2.0"
    up = Upstream(service="s", canary=Canary(version="2.0", percent=50, sticky="user"))
    assert len({choose_subset(up, "alice", f"10.0.0.{i}") for i in range(50)}) == 1


async def test_bulkhead_queues_then_sheds_with_retry_after():
    g = Guard("r", max_concurrency=1, queue_timeout=0.05, shed_latency=None)
    assert g.try_enter()
    assert not g.try_enter()
    waiter = asyncio.ensure_future(g.enter())
    await asyncio.sleep(0)
    g.leave(0.01)  # the slot passes to the waiter
    await waiter
    assert g.in_flight == 1
    with pytest.raises(Unavailable) as info:
        await g.enter()  # nobody leaves: shed after the queue timeout
    assert info.value.headers["Retry-After"] == "1" and info.value.reason == "overloaded"
    g.leave(None)
    assert g.in_flight == 0 and not g.waiters


def test_adaptive_shedding_on_latency():
    g = Guard("r", max_concurrency=None, queue_timeout=0.05, shed_latency=0.1)
    g.ewma = 0.5
    for _ in range(4):
        assert g.try_enter()  # a few requests still pass, to keep measuring
    with pytest.raises(Unavailable):
        g.try_enter()
    for _ in range(4):
        g.leave(0.001)
    g.ewma = 0.01
    assert g.try_enter()


def test_metrics_render_counters_and_histograms():
    m = GatewayMetrics()
    m.request("catalog", "GET", 200, 0.003)
    m.request("catalog", "GET", 200, 0.2)
    m.upstream("catalog", 200, 0.002)
    m.event("catalog", "shed")
    text = m.render().decode()
    assert 'gateway_requests_total{route="catalog",method="GET",status="200"} 2' in text
    assert 'gateway_request_duration_seconds_bucket{route="catalog",le="0.005"} 1' in text
    assert 'gateway_request_duration_seconds_bucket{route="catalog",le="+Inf"} 2' in text
    assert 'gateway_request_duration_seconds_count{route="catalog"} 2' in text
    assert 'gateway_events_total{route="catalog",kind="shed"} 1' in text
