"""The Redis rate limiter against the real Redis: a shared limit, script fallback, and Redis down."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from meshkit.basis.natsd import free_port
from meshkit.gateway.security import open_rate_limiter
from meshkit.gateway.security import redis_limiter as rl

pytestmark = pytest.mark.redis


@pytest.fixture
def key() -> str:
    return f"test:{uuid.uuid4().hex}"


async def test_two_instances_share_one_limit(redis_url, key):
    a, b = open_rate_limiter(redis_url), open_rate_limiter(redis_url)
    try:
        # 10 burst, 0.5/s refill: 40 concurrent hits split over two "gateways"
        results = await asyncio.gather(*((a if i % 2 else b).hit(key, rate=0.5, burst=10) for i in range(40)))
        allowed = [d for d in results if d.allowed]
        assert len(allowed) == 10
        assert sorted(d.remaining for d in allowed) == list(range(10))  # atomic: each token handed out once
        denied = [d for d in results if not d.allowed]
        assert all(d.retry_after > 0 and "Retry-After" in d.headers() for d in denied)
        assert a.failures == b.failures == 0
    finally:
        await a.close()
        await b.close()


async def test_refill_uses_the_rate(redis_url, key):
    lim = open_rate_limiter(redis_url)
    try:
        for _ in range(2):
            assert (await lim.hit(key, rate=20, burst=2)).allowed
        denied = await lim.hit(key, rate=20, burst=2)
        assert not denied.allowed and 0 < denied.retry_after <= 0.05
        await asyncio.sleep(0.06)
        assert (await lim.hit(key, rate=20, burst=2)).allowed
    finally:
        await lim.close()


async def test_evalsha_falls_back_to_eval_when_the_script_is_not_cached(redis_url, key, monkeypatch):
    # A script body the server has never seen (a unique comment): EVALSHA misses once.
    script = rl.SCRIPT + f"\n-- {uuid.uuid4().hex}\n"
    import hashlib

    monkeypatch.setattr(rl, "SCRIPT", script)
    monkeypatch.setattr(rl, "SCRIPT_SHA", hashlib.sha1(script.encode()).hexdigest())
    lim = open_rate_limiter(redis_url)
    evals = 0
    real_eval = lim.client.eval

    async def counting_eval(*args):
        nonlocal evals
        evals += 1
        return await real_eval(*args)

    lim.client.eval = counting_eval
    try:
        assert (await lim.hit(key, 1, 5)).remaining == 4
        assert (await lim.hit(key, 1, 5)).remaining == 3
        assert evals == 1  # the second hit went by EVALSHA
    finally:
        await lim.close()


async def test_concurrent_hits_share_round_trips_and_survive_a_lost_script(redis_url, key, monkeypatch):
    import hashlib

    script = rl.SCRIPT + f"\n-- {uuid.uuid4().hex}\n"  # unknown to the server: the pipeline path must load it
    monkeypatch.setattr(rl, "SCRIPT", script)
    monkeypatch.setattr(rl, "SCRIPT_SHA", hashlib.sha1(script.encode()).hexdigest())
    lim = open_rate_limiter(redis_url, max_inflight=2)
    try:
        results = await asyncio.gather(*(lim.hit(key, rate=0.1, burst=300) for _ in range(1000)))
        assert sum(d.allowed for d in results) == 300
        assert sorted(d.remaining for d in results if d.allowed) == list(range(300))
        assert lim.round_trips < 30 and lim.failures == 0  # 1000 hits, a handful of pipelines
    finally:
        await lim.close()


async def test_bucket_keys_expire_in_redis(redis_url, key):
    lim = open_rate_limiter(redis_url + "?prefix=meshkit:test:")
    try:
        await lim.hit(key, rate=10, burst=5)
        ttl = await lim.client.pttl(f"meshkit:test:{key}")
        assert 0 < ttl <= 1100  # time to refill one token (100 ms) + 1 s margin
    finally:
        await lim.close()


async def test_redis_down_fails_open_by_default_and_counts():
    lim = open_rate_limiter(f"redis://127.0.0.1:{free_port()}/0?timeout=0.2")
    try:
        decisions = [await lim.hit("k", 1, 3) for _ in range(5)]
        assert all(d.allowed for d in decisions)
        assert lim.failures == 5
    finally:
        await lim.close()


async def test_redis_down_fails_closed_when_asked():
    lim = open_rate_limiter(f"redis://127.0.0.1:{free_port()}/0", fail="closed", timeout=0.2)
    try:
        d = await lim.hit("k", 1, 3)
        assert not d.allowed and d.headers()["Retry-After"] == "1"
        assert lim.failures == 1
    finally:
        await lim.close()
