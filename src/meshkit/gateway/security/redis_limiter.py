"""Token buckets in Redis: one limit shared by every gateway instance.

Each hit is one ``EVALSHA`` of a Lua script that refills and takes atomically,
on Redis's own clock (``TIME``) so the gateways' clocks never need to agree. If
the script is not cached on the server (restart, failover) the call falls back
to loading it once.

Hits that arrive together are sent together: whatever is queued when a
round-trip can start goes as one pipeline (at most ``max_batch`` hits, at most
``max_inflight`` round-trips at a time). One hit alone costs one round-trip;
a thousand concurrent hits cost a few, and never exhaust the connection pool.

When Redis cannot be reached the limiter fails open (allows, the default) or
closed (denies), per ``fail``; either way it logs (at most every 10 s) and
counts in ``failures``. After a failure it does not try Redis again for
``retry_interval`` seconds, so a dead Redis does not add a timeout to every request.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from typing import Any
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

_OPTIONS = ("fail", "timeout", "prefix", "retry_interval", "max_connections", "max_inflight", "max_batch")
_Args = tuple[str, str, int, int]


class RedisRateLimiter:
    """Token buckets shared through Redis (``redis.asyncio``)."""

    def __init__(self, client: Any, *, fail: str = "open", prefix: str = "meshkit:rl:",
                 retry_interval: float = 1.0, max_inflight: int = 8, max_batch: int = 256) -> None:
        if fail not in ("open", "closed"):
            raise ConfigError(f"rate limiter fail mode {fail!r}: use 'open' or 'closed'")
        self.client = client
        self.fail_open = fail == "open"
        self.prefix = prefix
        self.retry_interval = retry_interval
        self.max_inflight = max(1, max_inflight)
        self.max_batch = max(1, max_batch)
        self.failures = 0  # hits answered without Redis
        self.round_trips = 0
        self._down_until = 0.0
        self._last_log = 0.0
        self._pending: list[tuple[_Args, asyncio.Future]] = []
        self._inflight = 0
        self._scheduled = False
        self._tasks: set[asyncio.Task] = set()

    @classmethod
    def from_url(cls, url: str, **options: Any) -> RedisRateLimiter:
        """Build from ``redis://host:port/db?fail=open&timeout=0.25&prefix=...&max_connections=16``.

        Connections are pooled and bounded; one immediate retry covers a pooled
        connection that Redis closed, and no backoff ever sleeps on the hot path.
        """
        parts = urlsplit(url)
        query = dict(parse_qsl(parts.query))
        ours = {k: query.pop(k) for k in _OPTIONS if k in query}
        ours.update(options)
        try:
            timeout = float(ours.pop("timeout", 0.25))
            retry_interval = float(ours.pop("retry_interval", 1.0))
            max_inflight = int(ours.pop("max_inflight", 8))
            max_batch = int(ours.pop("max_batch", 256))
            max_connections = int(ours.pop("max_connections", max_inflight + 8))
        except ValueError as exc:
            raise ConfigError(f"rate limiter URL {url!r}: timeout and retry_interval are seconds; "
                              "max_inflight, max_batch and max_connections integers") from exc
        redis_url = urlunsplit(parts._replace(query=urlencode(query)))
        pool = aioredis.BlockingConnectionPool.from_url(
            redis_url, max_connections=max_connections, timeout=timeout,
            socket_timeout=timeout, socket_connect_timeout=timeout, retry=Retry(NoBackoff(), 1),
        )
        client = aioredis.Redis(connection_pool=pool, retry=Retry(NoBackoff(), 1))
        return cls(client, fail=ours.pop("fail", "open"), prefix=ours.pop("prefix", "meshkit:rl:"),
                   retry_interval=retry_interval, max_inflight=max_inflight, max_batch=max_batch)

    async def hit(self, key: str, rate: float, burst: int, cost: int = 1) -> RateDecision:
        check_limits(rate, burst, cost)
        if self._down_until and time.monotonic() < self._down_until:
            return self._degraded(rate, burst, None)
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        self._pending.append(((self.prefix + key, repr(float(rate)), burst, cost), fut))
        if not self._scheduled and self._inflight < self.max_inflight:
            # Dispatch on the next loop turn: hits arriving in this turn share the round-trip.
            self._scheduled = True
            loop.call_soon(self._dispatch)
        try:
            allowed, tokens, retry = await fut
        except (RedisError, OSError) as exc:
            return self._degraded(rate, burst, exc)
        self._down_until = 0.0
        tokens = float(tokens)
        return RateDecision(bool(allowed), burst, int(tokens), (burst - tokens) / rate, float(retry))

    def _dispatch(self) -> None:
        self._scheduled = False
        while self._pending and self._inflight < self.max_inflight:
            batch, self._pending = self._pending[: self.max_batch], self._pending[self.max_batch:]
            self._inflight += 1
            task = asyncio.get_running_loop().create_task(self._run(batch))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _run(self, batch: list[tuple[_Args, asyncio.Future]]) -> None:
        try:
            replies = await self._execute([args for args, _ in batch])
        except BaseException as exc:
            for _, fut in batch:
                if not fut.done():
                    fut.set_exception(exc) if isinstance(exc, Exception) else fut.cancel()
            if not isinstance(exc, Exception):
                raise
        else:
            for (_, fut), reply in zip(batch, replies, strict=True):
                if not fut.done():
                    fut.set_exception(reply) if isinstance(reply, Exception) else fut.set_result(reply)
        finally:
            self._inflight -= 1
            if self._pending and not self._scheduled:
                self._dispatch()

    async def _execute(self, arglist: list[_Args]) -> list[Any]:
        """EVALSHA every hit in one round-trip; load the script and redo once if Redis lost it."""
        self.round_trips += 1
        if len(arglist) == 1:
            try:
                return [await self.client.evalsha(SCRIPT_SHA, 1, *arglist[0])]
            except NoScriptError:
                self.round_trips += 1
                return [await self.client.eval(SCRIPT, 1, *arglist[0])]
        replies = await self._pipeline(arglist)
        missing = [i for i, r in enumerate(replies) if isinstance(r, NoScriptError)]
        if missing:
            self.round_trips += 2
            await self.client.script_load(SCRIPT)
            for i, reply in zip(missing, await self._pipeline([arglist[i] for i in missing]), strict=True):
                replies[i] = reply
        return replies

    async def _pipeline(self, arglist: list[_Args]) -> list[Any]:
        pipe = self.client.pipeline(transaction=False)
        for args in arglist:
            pipe.evalsha(SCRIPT_SHA, 1, *args)
        return await pipe.execute(raise_on_error=False)

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
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.client.aclose()
        await self.client.connection_pool.disconnect()
