"""Calling another service by name: ``await client.get("catalog", "/products")``.

One call, in order:

1. **Deadline.** The effective budget is ``min(timeout, remaining budget of the
   current request)``; when that is already spent the call fails fast with
   :class:`~meshkit.basis.errors.GatewayTimeout` and nothing is sent. Each
   attempt carries what is left to the callee in ``x-deadline-ms``.
2. **Resolve** the service in the :class:`~meshkit.basis.registry.view.RegistryView`
   (a dict lookup, no I/O) and **pick** an instance with the balancer,
   skipping open circuits and ejected instances.
3. **Send** with the pooled keep-alive :class:`~meshkit.basis.http.HttpTransport`,
   carrying ``traceparent`` (a child span), ``x-request-id``, the caller's
   identity headers and ``x-meshkit-caller``.
4. **Record** the outcome in the instance's breaker and in outlier detection.
5. **Retry** when it is safe — the request was never sent (connect error), or
   the method is idempotent and the failure is a broken connection or a
   502/503/504 — on another instance when there is one, after a jittered
   backoff, while the retry budget and the deadline allow.

Transport errors become :class:`~meshkit.basis.errors.Unavailable`,
:class:`~meshkit.basis.errors.BadGateway` or
:class:`~meshkit.basis.errors.GatewayTimeout` (``raise ... from exc``). HTTP
error answers are returned, not raised: ``resp.raise_for_status()`` raises the
matching error. The hot path does no logging and builds headers from
pre-encoded bytes.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Mapping
from time import monotonic
from typing import Any
from urllib.parse import urlencode

import orjson

from meshkit.basis import context as ctxmod
from meshkit.basis.client.balancer import PowerOfTwoChoices
from meshkit.basis.client.breaker import CircuitBreaker
from meshkit.basis.client.outlier import OutlierDetector
from meshkit.basis.client.pool import Endpoint, ServicePool
from meshkit.basis.client.response import Response
from meshkit.basis.client.retry import IDEMPOTENT_METHODS, Backoff, RetryBudget
from meshkit.basis.errors import BadGateway, GatewayTimeout, MeshkitError, Unavailable
from meshkit.basis.http.errors import ConnectionClosed, RequestTimeout, TransportError
from meshkit.basis.seal import SEAL

_RETRY_STATUSES = frozenset({502, 503, 504})
_REQUEST_ID = ctxmod.REQUEST_ID.encode()
_TRACEPARENT = ctxmod.TRACEPARENT.encode()
_SEAL = SEAL.encode()
_TRACESTATE = ctxmod.TRACESTATE.encode()
_DEADLINE = ctxmod.DEADLINE.encode()
_CALLER = ctxmod.CALLER.encode()
_CONTENT_TYPE = b"content-type"
_JSON = b"application/json"
_IDENTITY_NAMES = frozenset(ctxmod.IDENTITY_HEADERS)
_current = ctxmod.current
_urandom = os.urandom


class ServiceClient:
    """Resilient HTTP calls to other services, found by name in a registry view.

    - ``view``: a started :class:`~meshkit.basis.registry.view.RegistryView` (or
      anything with ``instances(service) -> list[Instance]``, returning the same
      list object until the service changes);
    - ``caller``: this service's name, sent as ``x-meshkit-caller``;
    - ``transport``: an :class:`~meshkit.basis.http.HttpTransport` to share
      (default: one of its own, closed by :meth:`close`);
    - ``timeout``: default per-call budget in seconds, retries included;
    - ``max_attempts``: tries per call, the first included;
    - ``backoff``, ``breaker``, ``outlier``, ``retry_budget``, ``balancer``:
      policy factories, called once per upstream service.
    """

    def __init__(
        self,
        view: Any,
        *,
        caller: str,
        transport: Any = None,
        timeout: float = 5.0,
        max_attempts: int = 3,
        backoff: Backoff | None = None,
        breaker: Callable[[], CircuitBreaker] | None = None,
        outlier: Callable[[], OutlierDetector] | None = None,
        retry_budget: Callable[[], RetryBudget] | None = None,
        balancer: Callable[[], PowerOfTwoChoices] | None = None,
    ) -> None:
        self.view = view
        self.caller = caller
        self.timeout = timeout
        self.max_attempts = max(1, max_attempts)
        self.backoff = backoff or Backoff()
        self._owns_transport = transport is None
        if transport is None:
            from meshkit.basis.http import HttpTransport

            transport = HttpTransport()
        self.transport = transport
        self._send = transport.request
        self._new_breaker = breaker
        self._new_detector = outlier or OutlierDetector
        self._new_budget = retry_budget or RetryBudget
        self._new_balancer = balancer
        self._pools: dict[str, ServicePool] = {}
        self._sources: dict[str, list] = {}  # the view's list each pool was built from
        self._caller_header = (_CALLER, caller.encode())
        self._ident: object = None  # one-entry cache: identity -> encoded headers
        self._ident_headers: list[tuple[bytes, bytes]] = []

    # -- verbs ------------------------------------------------------------------------

    async def get(self, service: str, path: str, **kw: Any) -> Response:
        """``GET`` (see :meth:`request` for the keyword arguments)."""
        return await self.request("GET", service, path, **kw)

    async def post(self, service: str, path: str, **kw: Any) -> Response:
        """``POST``: retried only when the request was never sent."""
        return await self.request("POST", service, path, **kw)

    async def put(self, service: str, path: str, **kw: Any) -> Response:
        """``PUT`` (idempotent: retried on 502/503/504 and broken connections)."""
        return await self.request("PUT", service, path, **kw)

    async def patch(self, service: str, path: str, **kw: Any) -> Response:
        """``PATCH``: retried only when the request was never sent."""
        return await self.request("PATCH", service, path, **kw)

    async def delete(self, service: str, path: str, **kw: Any) -> Response:
        """``DELETE`` (idempotent)."""
        return await self.request("DELETE", service, path, **kw)

    # -- the call -----------------------------------------------------------------------

    async def request(
        self,
        method: str,
        service: str,
        path: str,
        *,
        json: Any = None,
        body: bytes | str | None = None,
        headers: Mapping[str, str] | None = None,
        params: Mapping[str, Any] | None = None,
        timeout: float | None = None,
    ) -> Response:
        """Call ``method path`` on an instance of ``service``; return its answer.

        ``json`` is encoded with orjson (and sets ``content-type``), else ``body``
        is sent as is; ``params`` become the query string; ``timeout`` overrides
        the client's default budget. Raises :class:`Unavailable` (no instance
        available or none reachable), :class:`BadGateway` (the connection broke
        or the answer was not HTTP) or :class:`GatewayTimeout` (budget spent).
        """
        start = monotonic()
        budget = self.timeout if timeout is None else timeout
        ctx = _current()
        if ctx is not None and ctx.deadline is not None:
            remaining = ctx.deadline - start
            if remaining <= 0:
                raise GatewayTimeout(
                    f"not calling {service!r}: the deadline of the current request has already passed",
                    reason="deadline_exceeded", details={"service": service},
                )
            if remaining < budget:
                budget = remaining
        deadline = start + budget

        hdrs = self._headers(ctx, headers)
        if json is not None:
            payload = orjson.dumps(json)
            hdrs.append((_CONTENT_TYPE, _JSON))
        elif body is None:
            payload = b""
        else:
            payload = body.encode() if isinstance(body, str) else body
        target = path
        if params:
            target += ("&" if "?" in path else "?") + urlencode(params, doseq=True)

        pool = self._pools.get(service)
        source = self.view.instances(service)
        if pool is None or source is not self._sources.get(service):
            pool = self._sync(service, source)
        pool.budget.record_call()
        return await self._attempts(pool, method.upper(), target, hdrs, payload, deadline, budget)

    async def _attempts(self, pool: ServicePool, method: str, target: str, hdrs: list,
                        payload: bytes, deadline: float, budget: float) -> Response:
        idempotent = method in IDEMPOTENT_METHODS
        tried: list[Endpoint] | None = None
        attempt = 0
        last: Response | None = None
        error: Exception | None = None
        n = len(hdrs)
        send = self._send
        while True:
            ep = pool.pick(tried)
            if ep is None and tried:
                ep = pool.pick()  # every instance was tried: the same one again beats giving up
            if ep is None or not ep.breaker.allow():
                if last is not None:
                    return last
                if error is not None:
                    raise self._translate(pool.service, error, budget) from error
                raise pool.unavailable()
            now = monotonic()
            left = deadline - now
            if left <= 0:
                raise GatewayTimeout(
                    f"{pool.service!r} did not answer within the {budget:.3f}s budget (deadline passed)",
                    reason="timeout", details={"service": pool.service},
                )
            del hdrs[n:]
            hdrs.append((_DEADLINE, b"%d" % int(left * 1000)))
            attempt += 1
            ep.in_flight += 1
            try:
                raw = await send(ep.host, ep.port, method, target, headers=hdrs, body=payload, timeout=left)
            except RequestTimeout as exc:
                # The attempt had the whole remaining budget: nothing is left for another.
                ep.end(monotonic() - now)
                pool.record(ep, False)
                raise self._translate(pool.service, exc, budget) from exc
            except TransportError as exc:
                ep.end(monotonic() - now)
                pool.record(ep, False)
                error, retry = exc, (not exc.request_sent) or idempotent
            except BaseException:
                ep.in_flight -= 1  # cancelled: says nothing about the instance
                raise
            else:
                ep.end(monotonic() - now)
                status = raw.status
                pool.record(ep, status < 500)
                resp = Response(status, raw.headers, raw.body, ep.key, attempt)
                if status not in _RETRY_STATUSES or not idempotent:
                    return resp
                last, error, retry = resp, None, True
            if not retry or attempt >= self.max_attempts or not pool.budget.try_retry():
                if last is not None and error is None:
                    return last
                raise self._translate(pool.service, error, budget) from error
            delay = self.backoff.delay(attempt - 1)
            if deadline - monotonic() <= delay:
                if error is None and last is not None:
                    return last
                raise self._translate(pool.service, error, budget) from error
            if tried is None:
                tried = [ep]
            else:
                tried.append(ep)
            if delay > 0:
                await asyncio.sleep(delay)

    # -- helpers ------------------------------------------------------------------------

    def _headers(self, ctx: ctxmod.RequestContext | None, extra: Mapping[str, str] | None) -> list:
        if ctx is None:
            # A call outside any request (a background job) starts its own trace.
            ids = _urandom(36).hex().encode()  # one syscall: request id, trace id, span id
            hdrs = [
                self._caller_header,
                (_REQUEST_ID, ids[:24]),
                (_TRACEPARENT, b"00-%s-%s-01" % (ids[24:56], ids[56:])),
            ]
        else:
            hdrs = [
                self._caller_header,
                (_REQUEST_ID, ctx.request_id.encode()),
                (_TRACEPARENT, ctx.child_traceparent().encode()),
            ]
            if ctx.tracestate:
                hdrs.append((_TRACESTATE, ctx.tracestate.encode()))
            ident = ctx.identity
            if ident is not None:
                if ident is not self._ident:
                    self._ident_headers = [(k.encode(), v.encode()) for k, v in ident.to_headers().items()]
                    self._ident = ident
                hdrs += self._ident_headers
                if ctx.seal is not None:  # the gateway's seal goes with the identity it sealed
                    hdrs.append((_SEAL, ctx.seal.encode()))
        if extra:
            # The caller's own headers win (e.g. a service account's identity).
            names = {k.lower().encode() for k in extra}
            hdrs = [h for h in hdrs if h[0] not in names]
            hdrs += [(k.encode(), str(v).encode()) for k, v in extra.items()]
        return hdrs

    def _sync(self, service: str, source: list) -> ServicePool:
        pool = self._pools.get(service)
        if pool is None:
            pool = ServicePool(
                service,
                balancer=self._new_balancer,
                breaker=self._new_breaker,
                detector=self._new_detector(),
                budget=self._new_budget(),
            )
            self._pools[service] = pool
        pool.sync(source)
        self._sources[service] = source
        return pool

    @staticmethod
    def _translate(service: str, exc: Exception | None, budget: float) -> MeshkitError:
        details = {"service": service}
        if isinstance(exc, RequestTimeout):
            return GatewayTimeout(f"{service!r} did not answer within {budget:.3f}s; "
                                  "it may be overloaded, or the budget may be too small", details=details)
        if isinstance(exc, TransportError) and not exc.request_sent:
            where = f" at {exc.host}:{exc.port}" if exc.host else ""
            return Unavailable(f"could not reach {service!r}{where}: {exc}; check that it is running",
                               reason="upstream_unreachable", details=details)
        if isinstance(exc, ConnectionClosed):
            return BadGateway(f"{service!r} closed the connection before answering in full: {exc}",
                              reason="upstream_disconnected", details=details)
        return BadGateway(f"{service!r} answered with invalid HTTP: {exc}", details=details)

    # -- admin ---------------------------------------------------------------------------

    def snapshot(self) -> dict:
        """Per service, per instance: breaker state, in-flight, ejection; plus retry budgets."""
        return {name: pool.snapshot() for name, pool in sorted(self._pools.items())}

    async def close(self) -> None:
        """Close the transport if this client created it."""
        if self._owns_transport:
            await self.transport.close()

    async def __aenter__(self) -> ServiceClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
