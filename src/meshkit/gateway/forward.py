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

:meth:`Forwarder.call` is the general coroutine. :meth:`Forwarder.call_nowait`
makes the first attempt without a coroutine, future or timer of its own (the
transport's ``send_nowait``: the answer is handed to a callback straight from
the upstream connection); whatever needs waiting — connecting, a backoff before
a retry, a full pool — continues in :meth:`Forwarder.call` in a task, with the
same rules.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from functools import partial

from meshkit.basis.errors import BadGateway, BadRequest, GatewayTimeout, MeshkitError, Unavailable
from meshkit.basis.http.errors import InvalidRequest, ProtocolError, RequestTimeout, TransportError
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


def _interim(status: int) -> ProtocolError:
    # A 1xx is never a final answer here (a 101 switches protocols, which no request of ours
    # asks for): passed on, the client would take the connection for switched, or wait for more.
    return ProtocolError(f"it answered {status} as a final answer")


Done = Callable[[Outcome | None, MeshkitError | None], None]


class Forwarder:
    """Calls upstreams for the gateway through the shared HTTP transport."""

    def __init__(self, transport, metrics: GatewayMetrics) -> None:
        self.transport = transport
        self.metrics = metrics
        self._nowait = getattr(transport, "send_nowait", None)
        self._tasks: set[asyncio.Task] = set()

    def call_nowait(self, route: RouteRuntime, pool: Pool, subset: str | None, method: str, target: str,
                    headers: list[tuple[bytes, bytes]], body: bytes, deadline: float, done: Done) -> None:
        """:meth:`call` with the answer (or the error) passed to ``done(outcome, error)``, exactly once."""
        nowait = self._nowait
        if nowait is not None:
            member = pool.balancer(route.policy, subset).pick(None)
            if member is not None and member.breaker.allow():
                remaining = deadline - time.monotonic()
                if remaining > 0:
                    pool.budget.record_call()
                    headers.append((DEADLINE_HEADER, b"%d" % int(remaining * 1000)))
                    state = (route, pool, subset, method, target, headers, body, deadline, done, member,
                             time.perf_counter())
                    try:
                        sent = nowait(member.host, member.port, method, target, headers, body, remaining,
                                      partial(self._answered, state))
                    except InvalidRequest as exc:
                        done(None, BadRequest(f"cannot forward this request: {exc}", reason="bad_request"))
                        return
                    if sent:
                        member.stats.in_flight += 1
                        return
                    # No idle connection: the general path connects (or waits) for this first attempt.
                    self._spawn(self.call(route, pool, subset, method, target, headers, body, deadline,
                                          _start=(None, 0, None, None, member)), done)
                    return
        self._spawn(self.call(route, pool, subset, method, target, headers, body, deadline), done)

    def _answered(self, state: tuple, response, exc: BaseException | None) -> None:
        route, pool, subset, method, target, headers, body, deadline, done, member, t0 = state
        dt = time.perf_counter() - t0
        stats = member.stats
        stats.in_flight -= 1  # stats.end(dt), inlined: once per proxied request
        stats.calls += 1
        stats.ewma = dt if stats.calls == 1 else stats.ewma + stats.ALPHA * (dt - stats.ewma)
        if exc is None and response.status < 200:
            exc, response = _interim(response.status), None
        if exc is None:
            status = response.status
            ok = status < 500
            retryable = status in route.retry_status and route.idempotent(method)
            error = None
        else:
            ok = False
            if isinstance(exc, TransportError):
                retryable = (not exc.request_sent) or (route.idempotent(method) and not isinstance(exc, RequestTimeout))
                error = _error_for(exc, pool)
            else:  # e.g. from the transport's stale-connection resend: nothing says a retry is safe
                retryable = False
                error = BadGateway(f"upstream {pool.name} failed to answer: {exc}", reason="upstream_failed")
            self.metrics.upstream_error(pool.name, type(exc).__name__)
        member.breaker.record(ok)  # member.record(ok), inlined
        member.outlier.record(member.key, ok)
        last = None
        if response is not None:
            self.metrics.upstream(pool.name, response.status, dt)
            last = Outcome(response, member)
        if not retryable or route.attempts <= 1 or not pool.budget.try_retry():
            if last is not None:
                done(last, None)
            else:
                done(None, error)
            return
        # A retry: backoff, another instance, maybe a new connection — the general path, in a task.
        self.metrics.event(route.name, "retry")
        self._spawn(self.call(route, pool, subset, method, target, headers, body, deadline,
                              _start=([member], 1, error, last, None)), done)

    def _spawn(self, coro, done: Done) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(lambda t: self._spawned(t, done))

    def _spawned(self, task: asyncio.Task, done: Done) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            done(None, Unavailable("the gateway is stopping; retry shortly", reason="stopping",
                                   headers={"Retry-After": "1"}))
            return
        exc = task.exception()
        if exc is None:
            done(task.result(), None)
        elif isinstance(exc, MeshkitError):
            done(None, exc)
        else:
            done(None, BadGateway(f"upstream call failed: {exc}", reason="upstream_failed"))

    async def call(self, route: RouteRuntime, pool: Pool, subset: str | None, method: str, target: str,
                   headers: list[tuple[bytes, bytes]], body: bytes, deadline: float,
                   stream: bool = False, attempts: int | None = None, *, _start: tuple | None = None) -> Outcome:
        """One logical call with retries; raises a :class:`MeshkitError` when no answer could be had."""
        idempotent = route.idempotent(method)
        attempts = attempts or route.attempts
        balancer = pool.balancer(route.policy, subset)
        tried: list[Member] | None = None
        error: MeshkitError | None = None
        last: Outcome | None = None
        metrics = self.metrics
        transport = self.transport
        n = 0
        first: Member | None = None
        if _start is None:
            pool.budget.record_call()
        else:
            # Going on from call_nowait: what was tried already, and maybe the instance to use first.
            tried, n, error, last, first = _start
            if n:
                delay = route.backoff.delay(n - 1)
                if time.monotonic() + delay >= deadline:
                    return _result(last, error, pool)
                await asyncio.sleep(delay)
        while True:
            if first is not None:  # already picked and admitted by its breaker
                member = first
                first = None
            else:
                picked = balancer.pick(tried)
                if picked is None and subset is not None:
                    # The chosen version has no available instance: any instance beats none.
                    picked = pool.balancer(route.policy, None).pick(tried)
                if picked is None:
                    break
                member = picked
                if not member.breaker.allow():
                    tried = [*tried, member] if tried else [member]
                    continue
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise GatewayTimeout(f"deadline passed before upstream {pool.name} answered", reason="deadline")
            if not headers or headers[-1][0] is not DEADLINE_HEADER:
                headers.append((DEADLINE_HEADER, b"%d" % int(remaining * 1000)))
            else:  # a retry (or the first attempt handed over by call_nowait): the budget left is smaller now
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
                if response.status < 200:
                    if stream:
                        await response.aclose()
                    raise _interim(response.status)
            except InvalidRequest as exc:
                raise BadRequest(f"cannot forward this request: {exc}", reason="bad_request") from exc
            except TransportError as exc:
                response = None
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
        return _result(last, error, pool)


def _result(last: Outcome | None, error: MeshkitError | None, pool: Pool | None = None) -> Outcome:
    if last is not None:
        return last
    if error is not None:
        raise error
    name = pool.name if pool is not None else "the upstream"
    raise Unavailable(f"no available instance of {name}: none registered, or all failing; retry shortly",
                      reason="no_instance", headers={"Retry-After": "1"})
