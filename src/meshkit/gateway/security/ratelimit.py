"""Rate limiting: token buckets per key, local or shared through Redis.

:func:`open_rate_limiter` picks the backend by URL scheme (it is a plain
function: backends connect lazily, on the first hit):

- ``memory://`` — in-process buckets (:class:`~.bucket.MemoryRateLimiter`);
  options as query: ``memory://?max_keys=100000``.
- ``redis://host:port/db`` — one limit shared by every gateway instance
  (:class:`~.redis_limiter.RedisRateLimiter`); options as query:
  ``?fail=open|closed`` (when Redis is down; default open), ``timeout=0.25``
  (seconds per call), ``prefix=meshkit:rl:``. ``rediss://`` for TLS.

``await limiter.hit(key, rate, burst)`` takes one token from the bucket ``key``
(refilled at ``rate`` tokens per second, holding at most ``burst``) and answers
with a :class:`RateDecision`. Keys end up in Redis: build them from what the
gateway already knows (route + client IP, subject, API key id), never from a
raw secret such as the API key itself. ``MemoryRateLimiter.hit_now`` is the
same as ``hit`` without a coroutine, for a hot path that wants to skip one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol, runtime_checkable
from urllib.parse import parse_qsl, urlsplit

from meshkit.basis.errors import ConfigError, TooManyRequests


@dataclass(slots=True)  # not frozen: a frozen dataclass costs 4× more to build, on every request
class RateDecision:
    """The answer for one hit (treat as read-only).

    ``limit`` is the burst, ``remaining`` the whole tokens left, ``reset_after``
    the seconds until the bucket is full again, ``retry_after`` the seconds until
    a denied hit would succeed (0 when allowed).
    """

    allowed: bool
    limit: int
    remaining: int
    reset_after: float
    retry_after: float

    def headers(self) -> dict[str, str]:
        """``RateLimit-Limit``, ``RateLimit-Remaining``, ``RateLimit-Reset`` (+ ``Retry-After`` when denied).

        Seconds are rounded up: a client that waits what we say must succeed.
        """
        h = {
            "RateLimit-Limit": str(self.limit),
            "RateLimit-Remaining": str(self.remaining),
            "RateLimit-Reset": str(math.ceil(self.reset_after)),
        }
        if not self.allowed:
            h["Retry-After"] = str(max(1, math.ceil(self.retry_after)))
        return h

    def error(self) -> TooManyRequests:
        """The 429 to raise for a denied hit, with every header."""
        wait = max(1, math.ceil(self.retry_after))
        return TooManyRequests(
            f"rate limit of {self.limit} burst exceeded; retry in {wait} s",
            details={"limit": self.limit, "retry_after": wait},
            headers=self.headers(),
        )


@runtime_checkable
class RateLimiter(Protocol):
    """What every rate-limit backend provides."""

    async def hit(self, key: str, rate: float, burst: int, cost: int = 1) -> RateDecision:
        """Take ``cost`` tokens from bucket ``key`` (``rate`` per second, at most ``burst``)."""

    async def close(self) -> None:
        """Release connections."""


def check_limits(rate: float, burst: int, cost: int = 1) -> None:
    """``ValueError`` unless ``rate > 0`` and ``1 <= cost <= burst``."""
    if not rate > 0:
        raise ValueError(f"rate must be > 0 tokens per second, got {rate!r}")
    if burst < 1 or cost < 1 or cost > burst:
        raise ValueError(f"need 1 <= cost ({cost}) <= burst ({burst})")


def open_rate_limiter(url: str = "memory://", **options) -> RateLimiter:
    """The rate-limit backend named by ``url``'s scheme; keyword ``options`` override the query."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    query = dict(parse_qsl(parts.query))
    if scheme == "memory":
        from meshkit.gateway.security.bucket import MemoryRateLimiter

        try:
            max_keys = int(query.pop("max_keys", 100_000))
        except ValueError as exc:
            raise ConfigError(f"rate limiter URL {url!r}: max_keys must be an integer") from exc
        if query:
            raise ConfigError(f"rate limiter URL {url!r}: unknown option(s) {sorted(query)}; known: max_keys")
        return MemoryRateLimiter(**{"max_keys": max_keys, **options})
    if scheme in ("redis", "rediss"):
        from meshkit.gateway.security.redis_limiter import RedisRateLimiter

        return RedisRateLimiter.from_url(url, **options)
    raise ConfigError(f"unknown rate limiter URL scheme {scheme!r} in {url!r}: use memory:// or redis://host:port/db")
