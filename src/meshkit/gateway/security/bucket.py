"""Token buckets in process memory: the default rate limiter.

A bucket holds at most ``burst`` tokens and refills continuously at ``rate``
tokens per second; a hit takes one. Buckets are kept in least-recently-used
order and evicted when idle long enough to be full again — a full bucket and a
missing one answer alike, so eviction changes nothing a client can see. Past
``max_keys`` live buckets the oldest goes even if not yet full (that key gets a
fresh burst: lenient, never wrong towards a well-behaved client), counted in
``evicted_early``.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable

from meshkit.gateway.security.ratelimit import RateDecision, check_limits

#: Idle buckets checked for eviction per hit: bounded work on the hot path.
_EVICT_PER_HIT = 4


def take(tokens: float, last: float, now: float, rate: float, burst: int, cost: int = 1
         ) -> tuple[float, bool, float]:
    """One token-bucket step: ``(tokens after, allowed, retry_after)`` (the reference that
    :meth:`MemoryRateLimiter.hit_now` inlines and the Redis script mirrors).

    ``tokens`` were there at ``last``; the bucket refills to ``now`` (never above
    ``burst``; a clock that went backwards adds nothing), then ``cost`` is taken
    if present. ``retry_after`` is the wait until ``cost`` tokens are there.
    """
    elapsed = now - last
    if elapsed > 0:
        tokens = min(float(burst), tokens + elapsed * rate)
    if tokens >= cost:
        return tokens - cost, True, 0.0
    return tokens, False, (cost - tokens) / rate


class MemoryRateLimiter:
    """In-process token buckets, bounded in memory. ``clock`` is injectable for tests."""

    def __init__(self, max_keys: int = 100_000, clock: Callable[[], float] = time.monotonic) -> None:
        if max_keys < 1:
            raise ValueError("max_keys must be at least 1")
        self.max_keys = max_keys
        self._clock = clock
        # key -> [tokens, last, rate, burst]; LRU order: least recently hit first
        self._buckets: OrderedDict[str, list] = OrderedDict()
        self.evicted_idle = 0
        self.evicted_early = 0

    async def hit(self, key: str, rate: float, burst: int, cost: int = 1) -> RateDecision:
        return self.hit_now(key, rate, burst, cost)

    def hit_now(self, key: str, rate: float, burst: int, cost: int = 1) -> RateDecision:
        """The synchronous core of :meth:`hit` (no I/O: usable outside a coroutine)."""
        if not rate > 0 or not 1 <= cost <= burst:
            check_limits(rate, burst, cost)  # raises, saying what is wrong
        now = self._clock()
        buckets = self._buckets
        b = buckets.get(key)
        if b is None:
            tokens = float(burst - cost)
            buckets[key] = [tokens, now, rate, burst]
            self._evict(now)
            return RateDecision(True, burst, int(tokens), cost / rate, 0.0)
        # inlined take(): this runs on every request of a rate-limited route
        tokens, elapsed = b[0], now - b[1]
        if elapsed > 0:
            tokens += elapsed * rate
            if tokens > burst:
                tokens = float(burst)
            b[1] = now  # a clock step backwards leaves "last" alone: no tokens minted later
        b[2], b[3] = rate, burst
        buckets.move_to_end(key)
        if tokens >= cost:
            tokens -= cost
            b[0] = tokens
            return RateDecision(True, burst, int(tokens), (burst - tokens) / rate, 0.0)
        b[0] = tokens
        return RateDecision(False, burst, int(tokens), (burst - tokens) / rate, (cost - tokens) / rate)

    def _evict(self, now: float) -> None:
        buckets = self._buckets
        for _ in range(_EVICT_PER_HIT):
            if not buckets:
                return
            key, (tokens, last, rate, burst) = next(iter(buckets.items()))
            if now - last >= (burst - tokens) / rate:
                del buckets[key]
                self.evicted_idle += 1
            else:
                break
        while len(buckets) > self.max_keys:
            buckets.popitem(last=False)
            self.evicted_early += 1

    def sweep(self) -> int:
        """Drop every bucket idle long enough to be full; returns how many."""
        now = self._clock()
        idle = [k for k, (t, last, r, b) in self._buckets.items() if now - last >= (b - t) / r]
        for k in idle:
            del self._buckets[k]
        self.evicted_idle += len(idle)
        return len(idle)

    def __len__(self) -> int:
        return len(self._buckets)

    async def close(self) -> None:
        self._buckets.clear()
