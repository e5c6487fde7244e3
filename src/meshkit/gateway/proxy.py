"""The hot path: one request in, one answer out.

Steps, in a fixed order (go-zero's, adapted to an edge proxy):
trace ids → route match → CORS preflight → authenticate → authorise → rate
limit → cache lookup → bulkhead/shedding → fault injection → upstream call
(balancer, breaker, retries, deadline) → stale/fallback on failure → cache
store → answer headers → metrics and access log.

Everything a request needs was compiled into the route table beforehand; the
table is read once per request (``self.table``), so a reload that swaps it never
affects a request in progress.
"""

from __future__ import annotations

import asyncio
import math
import random
import time

from meshkit.basis.context import parse_traceparent
from meshkit.basis.errors import BadRequest, MeshkitError, MethodNotAllowed, NotFound, PayloadTooLarge
from meshkit.basis.seal import SEAL, SEAL_TTL, seal
from meshkit.gateway.accesslog import AccessLog
from meshkit.gateway.aggregate import aggregate
from meshkit.gateway.cache import ResponseCache, may_serve_stale, request_bypass, response_ttl
from meshkit.gateway.fastpath import (
    SPECIAL,
    FastPath,
    answer_length,
    auth_not_configured,
    passed_on,
    rate_key,
)
from meshkit.gateway.forward import Forwarder
from meshkit.gateway.messages import Request, Response, error_response
from meshkit.gateway.metrics import GatewayMetrics
from meshkit.gateway.paths import clean_path
from meshkit.gateway.router import host_of
from meshkit.gateway.split import choose_subset
from meshkit.gateway.table import RouteRuntime, RouteTable

_SPECIAL = SPECIAL
_GET_HEAD = frozenset({"GET", "HEAD"})
#: Stands for the Host of a request that sent two: refused before routing (RFC 9112 §3.2), since
#: the gateway and whatever is in front of it could each route by another of them.
_TWO_HOSTS = b"\x00two Host headers"
# Ids need to be unique, not secret: a Mersenne Twister draw costs far less than a getrandom syscall.
_bits = random.getrandbits
_SEAL = SEAL.encode()


class Proxy(FastPath):
    """The gateway's request handler (see the module doc for the order of steps).

    :meth:`handle` is the general path (a coroutine per request); :meth:`fast`
    (from :class:`~meshkit.gateway.fastpath.FastPath`) the same steps without a task
    for plain proxied routes, handing over to the general path whenever one must wait.
    """

    def __init__(self, table: RouteTable, forwarder: Forwarder, metrics: GatewayMetrics, cache: ResponseCache,
                 *, authenticator=None, limiter=None, access_log: AccessLog | None = None,
                 trust_forwarded: bool = False, local: dict | None = None,
                 identity_key: bytes | None = None) -> None:
        self.table = table
        self.forwarder = forwarder
        self.metrics = metrics
        self.cache = cache
        self.authenticator = authenticator
        self.limiter = limiter
        self.access_log = access_log
        self.trust_forwarded = trust_forwarded
        #: The key of the seal on the identity passed upstream (meshkit.basis.seal), if any.
        self.identity_key = identity_key
        #: Paths the gateway answers itself (``/livez``, ``/readyz``, ``/metrics``): path → async fn(req).
        self.local = local or {}
        self._identities: dict[int, tuple[object, list[tuple[bytes, bytes]], int]] = {}
        # The fast path needs steps that (nearly always) finish without waiting: the in-memory
        # limiter's synchronous hit, and the built-in authenticator (cached token: a dict lookup;
        # a new token: a signature check; only an unknown key id waits, for the JWKS).
        self._hit_now = getattr(limiter, "hit_now", None)
        self._sync_auth = False
        if authenticator is not None:
            from meshkit.gateway.security.authenticator import Authenticator

            self._sync_auth = type(authenticator) is Authenticator
        self._tasks: set[asyncio.Task] = set()

    async def handle(self, req: Request) -> Response:
        """Answer one request; never raises."""
        local = self.local.get(req.path)
        if local is not None:
            return await local(req)
        return await self._handle(req, self._intake(req))

    def _intake(self, req: Request) -> tuple:
        """One pass over the headers: pick out what we need, keep what we forward; make the ids."""
        rid = tp = authz = apikey = host = origin = xff = preflight = None
        fwd: list[tuple[bytes, bytes]] = []
        for k, v in req.headers:
            if k not in _SPECIAL:
                fwd.append((k, v))
            elif k == b"host":
                host = v if host is None else _TWO_HOSTS
            elif k == b"authorization":
                authz = v
                fwd.append((k, v))
            elif k == b"x-request-id":
                rid = v
            elif k == b"traceparent":
                tp = v
            elif k == b"x-api-key":
                apikey = v
            elif k == b"origin":
                origin = v
                fwd.append((k, v))
            elif k == b"x-forwarded-for":
                xff = v
            elif k == b"access-control-request-method":
                preflight = v
                fwd.append((k, v))
            elif k == b"x-forwarded-proto" and self.trust_forwarded:
                # The scheme the client used with our load balancer (its value, the last one),
                # what the upstream builds its links with: https behind a TLS-terminating balancer.
                proto = v.rsplit(b",", 1)[-1].strip().lower()
                if proto == b"https" or proto == b"http":
                    req.scheme = proto.decode()
            # everything else in _SPECIAL (hop-by-hop, client-sent identity) is dropped
        new_rid = rid is None or len(rid) > 128 or not rid.replace(b"-", b"").replace(b"_", b"").isalnum()
        parsed = parse_traceparent(tp.decode("latin-1")) if tp else None
        if parsed:
            trace_id, flags = parsed[0], b"01" if parsed[2] else b"00"
            if new_rid:
                rid = b"%024x" % _bits(96)
        else:  # one draw for both ids
            ids = f"{_bits(224):056x}"
            trace_id, flags = ids[24:], b"01"
            if new_rid:
                rid = ids[:24].encode()
        client = req.client
        if self.trust_forwarded and xff:
            # The last address: the one our load balancer added. Those before it are whatever
            # the client sent (a made-up one per request would dodge every per-address limit).
            client = xff.rsplit(b",", 1)[-1].strip().decode("latin-1")
        return rid, trace_id, flags, authz, apikey, host, origin, xff, preflight, fwd, client

    async def _handle(self, req: Request, intake: tuple) -> Response:
        rid, trace_id, flags, authz, apikey, host, origin, xff, preflight, fwd, client = intake
        answer_headers: list[tuple[bytes, bytes]] = [(b"x-request-id", rid)]
        route: RouteRuntime | None = None
        upstream = cache_state = ""
        try:
            route, params, early = self._route(req, host, origin, preflight, answer_headers)
            if early is not None:
                return self._done(req, route, early, rid, trace_id, client, "", "")
            path = req.path
            identity = None
            if route.auth and (self.authenticator is not None or route.auth_required):
                auth = self.authenticator
                if auth is None:  # a route that requires auth on a gateway with no credential source
                    raise auth_not_configured()
                identity = await auth.authenticate(authz.decode("latin-1") if authz else None,
                                                   apikey.decode("latin-1") if apikey else None, client)
                if identity is None and route.auth_required:
                    from meshkit.gateway.security.challenge import credential_required

                    raise credential_required(f"call {req.method} {path}")
                if route.roles or route.permissions:
                    auth.authorize(identity, roles=route.roles, permissions=route.permissions)
            if route.rate is not None:
                rate, burst, _ = route.rate
                d = await self.limiter.hit(rate_key(route, identity, client), rate, burst)
                self._rated(route, d, answer_headers)
            self._upstream_headers(req, fwd, rid, trace_id, flags, xff, host, identity)
            deadline = time.monotonic() + route.timeout
            if route.parts:
                resp = await aggregate(self.forwarder, route, req.method, params, fwd, deadline)
                resp.headers += answer_headers
                return self._done(req, route, resp, rid, trace_id, client, "aggregate", "")
            resp, upstream, cache_state = await self._proxy(req, route, params, fwd, identity, deadline, client,
                                                            host)
            resp.headers += answer_headers
            return self._done(req, route, resp, rid, trace_id, client, upstream, cache_state)
        except MeshkitError as exc:
            return self._done(req, route, error_response(exc, answer_headers), rid, trace_id, client, upstream,
                              cache_state)
        except Exception as exc:  # never a stack trace to a client
            import logging

            logging.getLogger("meshkit.gateway").exception("unexpected error handling %s %s", req.method, req.path)
            return self._done(req, route, error_response(exc, answer_headers), rid, trace_id, client, upstream,
                              cache_state)

    def _route(self, req: Request, host: bytes | None, origin: bytes | None, preflight: bytes | None,
               answer_headers: list[tuple[bytes, bytes]]) -> tuple[RouteRuntime, dict, Response | None]:
        """Match the route, apply CORS and the body limit: ``(route, params, preflight answer or None)``."""
        path = req.path
        if host is None or host is _TWO_HOSTS:
            if host is _TWO_HOSTS:
                raise BadRequest("a request has one Host header, this one has more", reason="bad_host")
            if req.version != "1.0":  # RFC 9112 §3.2: an HTTP/1.1 request without one is refused
                raise BadRequest("an HTTP/1.1 request needs a Host header", reason="bad_host")
        if "%" in path or "/." in path or "//" in path or "\\" in path:
            path = req.path = clean_path(path)  # one spelling from here on: routed, forwarded, cached, logged
        table = self.table
        entry, params = table.router.match(req.method, host_of(host) if table.router.uses_host else "", path)
        if entry is None:
            if params:
                raise MethodNotAllowed(f"{req.method} is not allowed on {path}",
                                       headers={"Allow": ", ".join(sorted(params))})
            raise NotFound(f"no route for {req.method} {path}; see the gateway's routes (admin API /admin/routes)",
                           reason="no_route")
        route = entry.target
        if route.cors is not None:
            allowed = route.cors_headers(origin) if origin is not None else None
            if allowed is not None:
                if req.method == "OPTIONS" and preflight is not None:
                    return route, params, Response(204, [*answer_headers, *allowed, *route.cors_preflight])
                answer_headers += allowed
            elif route.cors_varies:
                # The answer depends on Origin even when it allows none: a shared cache in front
                # (a CDN) must not serve this one (without CORS headers) to an allowed origin.
                answer_headers.append((b"vary", b"origin"))
        if route.max_body is not None and len(req.body) > route.max_body:
            raise PayloadTooLarge(f"request body exceeds this route's limit of {route.max_body} bytes")
        return route, params, None

    def _rated(self, route: RouteRuntime, d, answer_headers: list[tuple[bytes, bytes]]) -> None:
        """A rate-limit decision: raise 429, or add the ``RateLimit-*`` headers."""
        if not d.allowed:
            self.metrics.event(route.name, "rate_limited")
            raise d.error()
        answer_headers += ((b"ratelimit-limit", b"%d" % d.limit), (b"ratelimit-remaining", b"%d" % d.remaining),
                           (b"ratelimit-reset", b"%d" % math.ceil(d.reset_after)))

    def _upstream_headers(self, req: Request, fwd: list[tuple[bytes, bytes]], rid: bytes, trace_id: str,
                          flags: bytes, xff: bytes | None, host: bytes | None, identity) -> None:
        # Headers for the upstream: what the client sent (minus hop-by-hop and identity) plus ours.
        client = req.client.encode()
        fwd += ((b"x-request-id", rid),
                (b"traceparent", b"00-%s-%016x-%s" % (trace_id.encode(), _bits(64), flags)),
                (b"x-forwarded-for", (xff + b", " + client) if xff else client),
                (b"x-forwarded-proto", req.scheme.encode()))
        if host is not None:
            fwd.append((b"x-forwarded-host", host))
        if identity is not None:
            fwd += self._identity_headers(identity)

    def _identity_headers(self, identity) -> list[tuple[bytes, bytes]]:
        # The authenticator hands out one shared Identity per cached token: encode its headers once,
        # and seal them (with an identity key) for SEAL_TTL, sealing again a minute before it ends.
        cached = self._identities.get(id(identity))
        if cached is not None and cached[0] is identity and (cached[2] == 0 or cached[2] - time.time() > 60):
            return cached[1]
        plain = identity.to_headers()
        headers = [(k.encode(), v.encode("latin-1", "replace")) for k, v in plain.items()]
        until = 0
        if self.identity_key is not None:
            until = int(time.time()) + SEAL_TTL
            headers.append((_SEAL, seal(plain, self.identity_key, until).encode()))
        if len(self._identities) > 10_000:
            self._identities.clear()
        self._identities[id(identity)] = (identity, headers, until)
        return headers

    async def _proxy(self, req: Request, route: RouteRuntime, params, fwd, identity, deadline: float,
                     client: str, host: bytes | None) -> tuple[Response, str, str]:
        target = route.upstream_path(req.path, params)
        if req.query:
            target += "?" + req.query.decode("latin-1")
        method = req.method
        cache = route.cache
        primary = stale = None
        store = False
        if cache is not None and method in _GET_HEAD:
            lookup, store = request_bypass(req.headers)
            if req.body:  # a GET with a body: the key does not cover what the upstream may read from it
                store = False
            # The caller as the upstream sees it (every identity header but the token id): the same
            # user with other grants (a new token after a role was taken away) is another caller.
            who = (identity.subject, identity.kind, identity.tenant, identity.roles, identity.permissions) \
                if (route.auth and identity is not None) else None
            # The Host goes upstream (x-forwarded-host), where it may end up in the answer
            # (absolute links, redirects): an answer made for one Host must not serve another.
            # And the upstream the route sends to (service, version, canary, rewrite): after a
            # reload that switches it (blue-green), the old side's answers are never served.
            primary = (route.name, target, who, host, route.upstream_tag)
            if lookup:
                e = self.cache.lookup(primary, route.vary, req.headers)
                if e is not None:
                    now = time.monotonic()
                    if now < e.expires:
                        self.metrics.cache_result(route.name, "hit")
                        return Response(e.status, [*e.headers, (b"age", b"%d" % e.age(now)), (b"x-cache", b"HIT")],
                                        e.body), "", "HIT"
                    stale = e
        guard = route.guard
        if not guard.try_enter():
            await guard.enter()
        latency = None
        streaming = False  # a streamed answer holds its slot until its body is sent (on_close)
        try:
            fault = route.fault
            if fault is not None:
                if fault.delay_percent and random.random() * 100 < fault.delay_percent:
                    await asyncio.sleep(fault.delay)
                if fault.abort_percent and random.random() * 100 < fault.abort_percent:
                    self.metrics.event(route.name, "fault_abort")
                    raise MeshkitError("fault injected by the route's configuration", reason="fault_injected",
                                       status=fault.abort_status)
            subset = choose_subset(route.cfg.upstream, identity.subject if identity else None, client) \
                if route.split else None
            t0 = time.perf_counter()
            try:
                out = await self.forwarder.call(route, route.pool, subset, method, target, fwd, req.body, deadline,
                                                stream=route.stream)
            except MeshkitError as exc:
                failed, out, error = True, None, exc
            else:
                latency = time.perf_counter() - t0
                failed = out.response.status in route.retry_status
            if failed:
                if stale is not None:
                    self.metrics.cache_result(route.name, "stale")
                    if out is not None and route.stream:
                        await out.response.aclose()
                    now = time.monotonic()
                    return Response(stale.status, [*stale.headers, (b"age", b"%d" % stale.age(now)),
                                                   (b"x-cache", b"STALE")], stale.body), "", "STALE"
                if route.fallback is not None:
                    if out is not None and route.stream:
                        await out.response.aclose()
                    self.metrics.event(route.name, "fallback")
                    status, headers, body = route.fallback
                    return Response(status, [*headers, (b"x-fallback", b"true")], body), "", "FALLBACK"
                if out is None:
                    raise error
            streaming = route.stream
        finally:
            if not streaming:
                guard.leave(latency)
        r = out.response
        headers = passed_on(r.headers)
        upstream = out.member.key
        if route.stream:
            async def sent() -> None:  # the body is out (or the client gone): free the upstream, then the slot
                try:
                    await r.aclose()
                finally:
                    guard.leave(latency)

            return Response(r.status, [*headers, *((b"content-length", v) for k, v in r.headers
                                                   if k.lower() == b"content-length")],
                            stream=r.iter_body(), on_close=sent), upstream, ""
        headers = answer_length(method, r, headers)
        state = ""
        if primary is not None:
            state = "MISS"
            self.metrics.cache_result(route.name, "miss")
            if store and method == "GET" and len(r.body) <= cache.max_entry_bytes:
                verdict = response_ttl(r.status, headers, cache.ttl,
                                       authorized_request=bool(primary[2] is None and _has_credentials(req)))
                if verdict is not None:
                    ttl, vary = verdict
                    self.cache.store(primary, route.vary, req.headers, r.status, headers, r.body, ttl,
                                     cache.stale_if_error if may_serve_stale(headers) else 0.0, vary)
            headers.append((b"x-cache", b"MISS"))
        return Response(r.status, headers, r.body), upstream, state

    def _done(self, req: Request, route: RouteRuntime | None, resp: Response, rid: bytes, trace_id: str,
              client: str, upstream: str, cache: str) -> Response:
        name = route.name if route is not None else ""
        seconds = time.perf_counter() - req.started
        self.metrics.request(name, req.method, resp.status, seconds)
        if self.access_log is not None:
            self.access_log.record(req.method, req.path, resp.status, seconds, name, rid.decode(), trace_id,
                                   client, upstream, cache, len(resp.body))
        return resp


def _has_credentials(req: Request) -> bool:
    for k, _ in req.headers:
        if k == b"authorization" or k == b"x-api-key" or k == b"cookie":
            return True
    return False
