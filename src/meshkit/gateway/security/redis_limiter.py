"""Token buckets in Redis: one limit shared by every gateway instance.

Each hit is one round-trip: ``EVALSHA`` of a Lua script that refills and takes
atomically, on Redis's own clock (``TIME``) so the gateways' clocks never need
to agree. If the script is not cached on the server (restart, failover) the
call falls back to ``EVAL`` once, which caches it again.

When Redis cannot be reached the limiter fails open (allows, the default) or
closed (denies), per ``fail``; either way it logs (at most every 10 s) and
counts in ``failures``. After a failure it does not try Redis again for
``retry_interval`` seconds, so a dead Redis does not add a timeout to every request.
"""

from __future__ import annotations

import hashlib
import logging
import time
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import NoScriptError, RedisError

from meshkit.basis.errors import ConfigError
from meshkit.gateway.security.ratelimit import RateDecision, check_limits

log = logging.getLogger("meshkit.gateway.security")

# KEYS[1] bucket; ARGV rate, burst, cost. Returns {allowed, tokens, retry_after}
# with the floats as strings (Redis would truncate Lua numbers to integers).
SCRIPT = """
if redis.replicate_commands then pcall(redis.replicate_commands) end
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local s = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(s[1])
local ts = tonumber(s[2])
if tokens == nil or ts == nil then
  tokens = burst
  ts = now
end
if now > ts then
  tokens = math.min(burst, tokens + (now - ts) * rate)
else
  now = ts
end
local allowed = 0
local retry = 0
if tokens >= cost then
  tokens = tokens - cost
  allowed = 1
else
  retry = (cost - tokens) / rate
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil((burst - tokens) / rate * 1000) + 1000)
return {allowed, tostring(tokens), tostring(retry)}
"""
SCRIPT_SHA = hashlib.sha1(SCRIPT.encode()).hexdigest()

_OPTIONS = ("fail", "timeout", "prefix", "retry_interval", "max_connections")


class RedisRateLimiter:
    """Token buckets shared through Redis (``redis.asyncio``)."""

    def __init__(self, client, *, fail: str = "open", prefix: str = "meshkit:rl:",
                 retry_interval: float = 1.0) -> None:
        if fail not in ("open", "closed"):
            raise ConfigError(f"rate limiter fail mode {fail!r}: use 'open' or 'closed'")
        self.client = client
        self.fail_open = fail == "open"
        self.prefix = prefix
        self.retry_interval = retry_interval
        self.failures = 0  # hits answered without Redis
        self._down_until = 0.0
        self._last_log = 0.0

    @classmethod
    def from_url(cls, url: str, **options) -> RedisRateLimiter:
        """Build from ``redis://host:port/db?fail=open&timeout=0.25&prefix=...&max_connections=64``.

        Connections are pooled and bounded (a burst of hits waits up to ``timeout``
        for a free one rather than opening thousands); one immediate retry covers
        a pooled connection that Redis closed, no backoff sleeps on the hot path.
        """
        parts = urlsplit(url)
        query = dict(parse_qsl(parts.query))
        ours = {k: query.pop(k) for k in _OPTIONS if k in query}
        ours.update(options)
        try:
            timeout = float(ours.pop("timeout", 0.25))
            retry_interval = float(ours.pop("retry_interval", 1.0))
            max_connections = int(ours.pop("max_connections", 64))
        except ValueError as exc:
            raise ConfigError(f"rate limiter URL {url!r}: timeout and retry_interval are seconds, "
                              "max_connections an integer") from exc
        redis_url = urlunsplit(parts._replace(query=urlencode(query)))
        pool = aioredis.BlockingConnectionPool.from_url(
            redis_url, max_connections=max_connections, timeout=timeout,
            socket_timeout=timeout, socket_connect_timeout=timeout, retry=Retry(NoBackoff(), 1),
        )
        client = aioredis.Redis(connection_pool=pool, retry=Retry(NoBackoff(), 1))
        return cls(client, fail=ours.pop("fail", "open"), prefix=ours.pop("prefix", "meshkit:rl:"),
                   retry_interval=retry_interval)

    async def hit(self, key: str, rate: float, burst: int, cost: int = 1) -> RateDecision:
        check_limits(rate, burst, cost)
        if self._down_until and time.monotonic() < self._down_until:
            return self._degraded(rate, burst, None)
        args = (self.prefix + key, repr(float(rate)), burst, cost)
        try:
            try:
                allowed, tokens, retry = await self.client.evalsha(SCRIPT_SHA, 1, *args)
            except NoScriptError:
                allowed, tokens, retry = await self.client.eval(SCRIPT, 1, *args)
        except (RedisError, OSError) as exc:
            return self._degraded(rate, burst, exc)
        self._down_until = 0.0
        tokens = float(tokens)
        return RateDecision(bool(allowed), burst, int(tokens), (burst - tokens) / rate, float(retry))

    def _degraded(self, rate: float, burst: int, exc: BaseException | None) -> RateDecision:
        now = time.monotonic()
        self.failures += 1
        if exc is not None:
            self._down_until = now + self.retry_interval
        if now - self._last_log >= 10.0:
            self._last_log = now
            log.error("Redis rate limiter unavailable (%s); failing %s (%d hits so far without Redis)",
                      exc or "still down", "open" if self.fail_open else "closed", self.failures)
        if self.fail_open:
            return RateDecision(True, burst, burst - 1, 0.0, 0.0)
        return RateDecision(False, burst, 0, burst / rate, max(1.0, 1.0 / rate))

    async def close(self) -> None:
        await self.client.aclose()
        await self.client.connection_pool.disconnect()
