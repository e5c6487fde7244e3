"""Token-bucket math, the in-memory limiter (injected clock), eviction, headers and URL choice."""

from __future__ import annotations

import pytest

from meshkit.basis.errors import ConfigError
from meshkit.gateway.security import MemoryRateLimiter, RateDecision, open_rate_limiter
from meshkit.gateway.security.bucket import take


class Clock:
    def __init__(self, t: float = 1000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def test_take_refills_at_rate_and_caps_at_burst():
    assert take(0.0, 0.0, 0.5, rate=4, burst=10) == (1.0, True, 0.0)  # 0.5 s × 4/s = 2, minus 1
    assert take(9.0, 0.0, 100.0, rate=4, burst=10) == (9.0, True, 0.0)  # capped at 10, minus 1
    tokens, allowed, retry = take(0.25, 0.0, 0.0, rate=2, burst=10)
    assert (tokens, allowed) == (0.25, False) and retry == pytest.approx(0.375)  # 0.75 token at 2/s


def test_take_ignores_a_clock_that_went_backwards():
    assert take(2.0, 10.0, 5.0, rate=100, burst=10) == (1.0, True, 0.0)


def test_take_with_cost():
    assert take(5.0, 0.0, 0.0, rate=1, burst=10, cost=3) == (2.0, True, 0.0)
    assert take(2.0, 0.0, 0.0, rate=1, burst=10, cost=3) == (2.0, False, 1.0)


async def test_burst_then_refill():
    clock = Clock()
    lim = MemoryRateLimiter(clock=clock)
    got = [await lim.hit("ip:1", rate=2, burst=3) for _ in range(4)]
    assert [d.allowed for d in got] == [True, True, True, False]
    assert [d.remaining for d in got] == [2, 1, 0, 0]
    assert got[3].retry_after == pytest.approx(0.5)
    assert got[2].reset_after == pytest.approx(1.5)  # 3 tokens missing at 2/s
    clock.t += 0.49
    assert not (await lim.hit("ip:1", 2, 3)).allowed
    clock.t += 0.02  # 0.51 s since empty: one token back
    d = await lim.hit("ip:1", 2, 3)
    assert d.allowed and d.remaining == 0


async def test_keys_are_independent():
    lim = MemoryRateLimiter(clock=Clock())
    assert (await lim.hit("a", 1, 1)).allowed
    assert not (await lim.hit("a", 1, 1)).allowed
    assert (await lim.hit("b", 1, 1)).allowed


async def test_sustained_rate_is_exact_over_time():
    clock = Clock()
    lim = MemoryRateLimiter(clock=clock)
    allowed = 0
    for _ in range(1000):  # 10 s at 100 hits/s against a 10/s limit with burst 5
        allowed += (await lim.hit("k", rate=10, burst=5)).allowed
        clock.t += 0.01
    assert allowed == pytest.approx(5 + 10 * 10, abs=1)


async def test_idle_buckets_are_evicted_once_full_again():
    clock = Clock()
    lim = MemoryRateLimiter(clock=clock)
    for i in range(50):
        await lim.hit(f"k{i}", rate=10, burst=10)
    assert len(lim) == 50
    clock.t += 0.2  # one token taken at 10/s: full again after 0.1 s
    await lim.hit("fresh", 10, 10)
    assert len(lim) == 47  # four idle ones evicted per new bucket: bounded work per hit
    assert lim.sweep() == 46 and len(lim) == 1
    assert lim.evicted_idle == 50


async def test_a_bucket_still_refilling_is_not_evicted_as_idle():
    clock = Clock()
    lim = MemoryRateLimiter(clock=clock)
    for _ in range(5):
        await lim.hit("busy", rate=1, burst=5)
    clock.t += 1.0  # 1 of 5 tokens back: not full
    await lim.hit("other", 1, 5)
    assert lim.sweep() == 0
    d = await lim.hit("busy", 1, 5)
    assert d.allowed and d.remaining == 0  # the state was kept: exactly the refilled token


async def test_max_keys_bounds_memory():
    lim = MemoryRateLimiter(max_keys=100, clock=Clock())
    for i in range(1000):
        await lim.hit(f"k{i}", 1, 5)
    assert len(lim) == 100 and lim.evicted_early == 900


async def test_invalid_limits_are_refused():
    lim = MemoryRateLimiter()
    with pytest.raises(ValueError):
        await lim.hit("k", 0, 5)
    with pytest.raises(ValueError):
        await lim.hit("k", 1, 0)
    with pytest.raises(ValueError):
        await lim.hit("k", 1, 2, cost=3)


def test_headers_allowed_and_denied():
    ok = RateDecision(True, limit=10, remaining=7, reset_after=1.2, retry_after=0.0)
    assert ok.headers() == {"RateLimit-Limit": "10", "RateLimit-Remaining": "7", "RateLimit-Reset": "2"}
    no = RateDecision(False, limit=10, remaining=0, reset_after=5.0, retry_after=0.3)
    assert no.headers()["Retry-After"] == "1"  # rounded up, never 0
    err = no.error()
    assert err.status == 429 and err.headers["Retry-After"] == "1" and "retry in 1 s" in err.message


def test_open_rate_limiter_by_scheme():
    lim = open_rate_limiter("memory://?max_keys=7")
    assert isinstance(lim, MemoryRateLimiter) and lim.max_keys == 7
    from meshkit.gateway.security.redis_limiter import RedisRateLimiter

    r = open_rate_limiter("redis://127.0.0.1:6379/0?fail=closed&timeout=0.1")
    assert isinstance(r, RedisRateLimiter) and not r.fail_open
    with pytest.raises(ConfigError, match="memory:// or redis://"):
        open_rate_limiter("etcd://x")
    with pytest.raises(ConfigError, match="unknown option"):
        open_rate_limiter("memory://?maxkeys=1")
    with pytest.raises(ConfigError, match="'open' or 'closed'"):
        open_rate_limiter("redis://127.0.0.1:6379/0?fail=maybe")


async def test_limiter_agrees_with_the_reference_step_on_random_traffic():
    import random

    rnd = random.Random(7)
    clock = Clock()
    lim = MemoryRateLimiter(clock=clock)
    tokens, last = 4.0, clock.t
    for _ in range(2000):
        clock.t += rnd.choice([0.0, 0.001, 0.05, 0.3, -0.01])  # including small steps backwards
        cost = rnd.choice([1, 1, 2])
        got = await lim.hit("k", rate=3.0, burst=4, cost=cost)
        tokens, allowed, retry = take(tokens, last, clock.t, 3.0, 4, cost)
        last = max(last, clock.t)
        assert got.allowed == allowed and got.retry_after == pytest.approx(retry)
        assert got.remaining == int(tokens) and got.reset_after == pytest.approx((4 - tokens) / 3.0)
