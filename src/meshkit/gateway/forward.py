"""Sending a request upstream: pick an instance, call, judge, maybe retry.

Order per attempt: balancer pick (skipping open breakers and ejected
instances) → breaker ``allow`` → call with the remaining deadline → record the
outcome in the breaker, the outlier detector and the metrics. Retries:

- idempotent methods retry on connect errors, on a connection that died
  mid-answer (the instance crashed) and on the route's retry statuses
  (502/503/504 by default), never on a timeout (the deadline is spent);
- other methods retry only when nothing was sent (connect errors);
- each retry goes to an instance not tried yet, after a jittered backoff, and
  only while the pool's retry budget allows it.
"""

from __future__ import annotations

import asyncio
import time

from meshkit.basis.errors import BadGateway, BadRequest, GatewayTimeout, MeshkitError, Unavailable
from meshkit.basis.http.errors import InvalidRequest, RequestTimeout, TransportError
from meshkit.gateway.metrics import GatewayMetrics
from meshkit.gateway.table import RouteRuntime
from meshkit.gateway.upstream import Member, Pool

DEADLINE_HEADER = b"x-deadline-ms"


class Outcome:
    """The answer of an upstream (buffered or streaming) and which instance gave it."""

    __slots__ = ("member", "response")

    def __init__(self, response, member: Member) -> None:
        self.response = response
        self.member = member


def _error_for(exc: TransportError, pool: Pool) -> MeshkitError:
    if isinstance(exc, RequestTimeout) and exc.request_sent:
        return GatewayTimeout(f"upstream {pool.name} did not answer in time", reason="upstream_timeout")
    if not exc.request_sent:
        return Unavailable(f"upstream {pool.name} could not be reached", reason="upstream_unreachable",
                           headers={"Retry-After": "1"})
    return BadGateway(f"upstream {pool.name} failed to answer: {exc}", reason="upstream_failed")


class Forwarder:
    """Calls upstreams for the gateway through the shared HTTP transport."""

    def __init__(self, transport, metrics: GatewayMetrics) -> None:
        self.transport = transport
        self.metrics = metrics

    async def call(self, route: RouteRuntime, pool: Pool, subset: str | None, method: str, target: str,
                   headers: list[tuple[bytes, bytes]], body: bytes, deadline: float,
                   stream: bool = False, attempts: int | None = None) -> Outcome:
        """One logical call with retries; raises a :class:`MeshkitError` when no answer could be had."""
        idempotent = route.idempotent(method)
        attempts = attempts or route.attempts
        balancer = pool.balancer(route.policy, subset)
        tried: list[Member] | None = None
        error: MeshkitError | None = None
        last: Outcome | None = None
        pool.budget.record_call()
        metrics = self.metrics
        transport = self.transport
        n = 0
        while True:
            member = balancer.pick(tried)
            if member is None and subset is not None:
                # The chosen version has no available instance: any instance beats none.
                member = pool.balancer(route.policy, None).pick(tried)
            if member is None:
                break
            if not member.breaker.allow():
                tried = [*tried, member] if tried else [member]
                continue
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise GatewayTimeout(f"deadline passed before upstream {pool.name} answered", reason="deadline")
            if n == 0:
                headers.append((DEADLINE_HEADER, b"%d" % int(remaining * 1000)))
            else:  # a retry: the budget left is smaller now
                headers[-1] = (DEADLINE_HEADER, b"%d" % int(remaining * 1000))
            hdrs = headers
            stats = member.stats
            stats.in_flight += 1
            t0 = time.perf_counter()
            response = None
            try:
                if stream:
                    response = await transport.stream(member.host, member.port, method, target, headers=hdrs,
                                                      body=body, timeout=remaining)
                else:
                    response = await transport.request(member.host, member.port, method, target, headers=hdrs,
                                                       body=body, timeout=remaining)
            except InvalidRequest as exc:
                raise BadRequest(f"cannot forward this request: {exc}", reason="bad_request") from exc
            except TransportError as exc:
                ok = False
                retryable = (not exc.request_sent) or (idempotent and not isinstance(exc, RequestTimeout))
                error = _error_for(exc, pool)
                metrics.upstream_error(pool.name, type(exc).__name__)
            else:
                status = response.status
                ok = status < 500
                # A streamed answer cannot be replayed once we started reading it: no status retries.
                retryable = idempotent and not stream and status in route.retry_status
            finally:
                dt = time.perf_counter() - t0
                stats.end(dt)
            member.record(ok)
            if response is not None:
                metrics.upstream(pool.name, response.status, dt)
            n += 1
            if response is not None:
                last = Outcome(response, member)
            if not retryable or n >= attempts or not pool.budget.try_retry():
                break
            metrics.event(route.name, "retry")
            tried = [*tried, member] if tried else [member]
            delay = route.backoff.delay(n - 1)
            if time.monotonic() + delay >= deadline:
                break
            await asyncio.sleep(delay)
        if last is not None:
            return last
        if error is not None:
            raise error
        raise Unavailable(f"no available instance of {pool.name}: none registered, or all failing; retry shortly",
                          reason="no_instance", headers={"Retry-After": "1"})
