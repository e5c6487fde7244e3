"""The proxy's hot path without a task: callbacks from the client connection to the upstream one and back.

:meth:`FastPath.fast` is the server's ``fast`` hook (see
:mod:`meshkit.gateway.protocol`). For a plain proxied route it runs the same
steps as :meth:`Proxy.handle <meshkit.gateway.proxy.Proxy.handle>`, in the same
order and with the same answers, but synchronously: the request goes upstream
through :meth:`Forwarder.call_nowait <meshkit.gateway.forward.Forwarder.call_nowait>`
and the answer is written to the client from the upstream connection's
``data_received``. No task, future or timer is made per request; on this
machine that took a proxied request's CPU time down by about a third (numbers
in ``docs/benchmarks.md``).

Whatever has to wait goes to the general coroutine path, from the step it got
to and never repeating one (a rate-limit token is taken once): routes with a
cache, aggregation, streaming or fault injection; API keys or another
authenticator than the built-in one (their lookups may do I/O); a rate limiter
without a synchronous ``hit_now`` (Redis); a full bulkhead; no idle upstream
connection, and retries (inside the forwarder).
"""

from __future__ import annotations

import asyncio
import logging
import time
from functools import partial

from meshkit.basis.context import IDENTITY_HEADERS
from meshkit.basis.errors import MeshkitError
from meshkit.basis.seal import SEAL
from meshkit.gateway.messages import Request, Response, error_response
from meshkit.gateway.protocol import HttpProtocol
from meshkit.gateway.split import choose_subset

log = logging.getLogger("meshkit.gateway")


def _spellings(name: str) -> set[bytes]:
    """``name`` with each ``-`` also as ``_``: CGI, WSGI, PHP and Django read ``x_meshkit_subject``
    as ``x-meshkit-subject``, so a client could pass an identity under the other spelling."""
    out = [""]
    for ch in name:
        out = [o + c for o in out for c in ("-_" if ch == "-" else ch)]
    return {o.encode() for o in out}


_IDENTITY = frozenset().union(*(_spellings(h) for h in (*IDENTITY_HEADERS, SEAL)))
#: Request headers never forwarded as received: hop-by-hop, or rewritten by us.
SPECIAL = frozenset({
    b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding", b"te", b"trailer", b"upgrade",
    b"host", b"content-length", b"x-forwarded-for", b"x-forwarded-proto", b"x-forwarded-host", b"forwarded",
    b"x-request-id", b"traceparent", b"x-deadline-ms", b"authorization", b"x-api-key", b"origin",
    b"proxy-authorization", b"access-control-request-method", b"expect",  # (the server answered Expect)
    # Many frameworks let these override the method or path the gateway routed and authorised
    # (a GET on a public route acting as a DELETE), or take the client address from them.
    b"x-http-method-override", b"x-http-method", b"x-method-override", b"x-original-url", b"x-rewrite-url",
    b"x-real-ip", b"true-client-ip", b"x-client-ip", b"x-forwarded-port", b"x-forwarded-prefix",
    b"x-forwarded-server",
}) | _IDENTITY
#: Upstream answer headers not passed to the client.
DROP_ANSWER = frozenset({b"connection", b"keep-alive", b"transfer-encoding", b"content-length", b"x-request-id",
                         b"proxy-authenticate", b"trailer", b"upgrade"})


def passed_on(received: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """An upstream's answer headers as passed on: names lower-cased, hop-by-hop and framing dropped."""
    headers = []
    for k, v in received:
        k = k.lower()
        if k not in DROP_ANSWER:
            headers.append((k, v))
    return headers


def head_block(received: list[tuple[bytes, bytes]], extra: list[tuple[bytes, bytes]]) -> bytes:
    """:func:`passed_on` and then ``extra``, serialised as header lines in one pass (the hot path's answer)."""
    parts = []
    for k, v in received:
        k = k.lower()
        if k not in DROP_ANSWER:
            parts += (k, b": ", v, b"\r\n")
    if extra:
        parts.append(b"\r\n".join(map(b": ".join, extra)))
        parts.append(b"\r\n")
    return b"".join(parts)


def answer_length(method: str, r, headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """``headers`` plus the upstream's ``content-length`` when its answer has no body by rule
    (HEAD, 304: the length is that of the GET answer, RFC 9110 §8.6)."""
    if method == "HEAD" or r.status == 304:
        headers += [(b"content-length", v) for k, v in r.headers if k.lower() == b"content-length"][:1]
    return headers


def auth_not_configured() -> MeshkitError:
    """503 for a route requiring auth on a gateway that has no credential source configured."""
    return MeshkitError(
        "authentication is not configured on this gateway: set GATEWAY_JWKS_URL (tokens), "
        "GATEWAY_API_KEYS_SERVICE (API keys from the SSO) or GATEWAY_API_KEYS_FILE",
        reason="auth_not_configured", status=503)


def rate_key(route, identity, client: str) -> str:
    """The token bucket a request draws from: per user, verified API key, or client address.

    An API-key bucket is named by the key's id, never by the secret (bucket names end
    up in Redis), and only once the key was verified: a made-up key gets no bucket of
    its own, it shares its client address's.
    """
    kind = route.rate[2]
    if kind == "user" and identity is not None:
        return f"{route.name}|u|{identity.subject}"
    if kind == "apikey" and identity is not None and identity.kind == "apikey":
        return f"{route.name}|k|{identity.token_id or identity.subject}"
    return f"{route.name}|ip|{client}"


class FastPath:
    """Mixed into :class:`~meshkit.gateway.proxy.Proxy`: the task-free hot path."""

    _tasks: set[asyncio.Task]

    def fast(self, req: Request, conn: HttpProtocol) -> bool:
        """Take ``req`` (answering through ``conn.answer``) and return ``True``; ``False`` for a local path."""
        if req.path in self.local:  # type: ignore[attr-defined]
            return False
        intake = self._intake(req)  # type: ignore[attr-defined]
        rid, trace_id, _, authz, apikey, host, origin, _, preflight, _, client = intake
        answer_headers: list[tuple[bytes, bytes]] = [(b"x-request-id", rid)]
        route = None
        try:
            route, params, early = self._route(req, host, origin, preflight, answer_headers)  # type: ignore
            if early is not None:
                conn.answer(req, self._done(req, route, early, rid, trace_id, client, "", ""))  # type: ignore
                return True
            auth = self.authenticator  # type: ignore[attr-defined]
            needs_auth = route.auth and (auth is not None or route.auth_required)
            if (route.cache is not None or route.parts or route.stream or route.fault is not None
                    or route.pool is None or (route.rate is not None and self._hit_now is None)  # type: ignore
                    or (needs_auth and (apikey is not None or not self._sync_auth))):  # type: ignore
                self._background(req, conn, self._handle(req, intake))  # type: ignore[attr-defined]
                return True
            identity = None
            if needs_auth:
                if auth is None:  # a route that requires auth on a gateway with no credential source
                    raise auth_not_configured()
                identity = auth.cached(authz) if authz else None
                if identity is None and authz:  # a token not seen yet: verify it (no wait unless a new key id)
                    coro = auth.authenticate(authz.decode("latin-1"), None, client)
                    try:
                        waiting = coro.send(None)
                    except StopIteration as done:
                        identity = done.value
                    else:  # a new key id: the JWKS is being fetched; go on when it is in
                        self._background(req, conn, self._after_auth_async(req, conn, intake, route, params,
                                                                            answer_headers, coro, waiting))
                        return True
            self._admitted(req, conn, intake, route, params, answer_headers, identity)
        except MeshkitError as exc:
            conn.answer(req, self._done(req, route, error_response(exc, answer_headers), rid, trace_id,  # type: ignore
                                        client, "", ""))
        return True

    def _admitted(self, req: Request, conn: HttpProtocol, intake: tuple, route, params: dict,
                  answer_headers: list[tuple[bytes, bytes]], identity) -> None:
        """After authentication: authorise, rate limit, then send upstream (raises MeshkitError)."""
        rid, trace_id, flags, _, _, host, _, xff, _, fwd, client = intake
        if identity is None and route.auth_required:
            from meshkit.gateway.security.challenge import credential_required

            raise credential_required(f"call {req.method} {req.path}")
        if route.roles or route.permissions:
            self.authenticator.authorize(identity, roles=route.roles,  # type: ignore[attr-defined]
                                         permissions=route.permissions)
        if route.rate is not None:
            rate, burst, _ = route.rate
            self._rated(route, self._hit_now(rate_key(route, identity, client), rate,  # type: ignore
                                             burst), answer_headers)
        self._upstream_headers(req, fwd, rid, trace_id, flags, xff, host, identity)  # type: ignore
        deadline = time.monotonic() + route.timeout
        guard = route.guard
        if not guard.try_enter():
            self._background(req, conn, self._enter_async(req, conn, intake, route, params, answer_headers,
                                                          identity, deadline))
            return
        self._send(req, conn, intake, route, params, answer_headers, identity, deadline)

    def _send(self, req: Request, conn: HttpProtocol, intake: tuple, route, params: dict,
              answer_headers: list[tuple[bytes, bytes]], identity, deadline: float) -> None:
        # Holding a guard slot from here on: every way out releases it (in _upstream_done).
        client = intake[10]
        target = route.upstream_path(req.path, params)
        if req.query:
            target += "?" + req.query.decode("latin-1")
        subset = choose_subset(route.cfg.upstream, identity.subject if identity else None, client) \
            if route.split else None
        t0 = time.perf_counter()
        self.forwarder.call_nowait(  # type: ignore[attr-defined]
            route, route.pool, subset, req.method, target, intake[9], req.body, deadline,
            partial(self._upstream_done, req, conn, intake, route, answer_headers, t0))

    def _upstream_done(self, req: Request, conn: HttpProtocol, intake: tuple, route,
                       answer_headers: list[tuple[bytes, bytes]], t0: float, out, error) -> None:
        rid, trace_id, client = intake[0], intake[1], intake[10]
        route.guard.leave(None if out is None else time.perf_counter() - t0)
        upstream = ""
        try:
            if out is None or out.response.status in route.retry_status:
                if route.fallback is not None:
                    self.metrics.event(route.name, "fallback")  # type: ignore[attr-defined]
                    status, headers, body = route.fallback
                    resp = Response(status, [*headers, (b"x-fallback", b"true"), *answer_headers], body)
                    upstream = "FALLBACK"
                    conn.answer(req, self._done(req, route, resp, rid, trace_id, client, "",  # type: ignore
                                                upstream))
                    return
                if out is None:
                    raise error
            r = out.response
            status = r.status
            if req.method != "HEAD" and status != 204 and status != 304:
                resp = Response(status, None, r.body)
                resp.head = head_block(r.headers, answer_headers)
            else:  # no body: the upstream's content-length (if any) stands, ours would say 0
                resp = Response(status, answer_length(req.method, r, passed_on(r.headers)) + answer_headers)
            upstream = out.member.key
        except MeshkitError as exc:
            resp = error_response(exc, answer_headers)
        except Exception as exc:  # never a stack trace to a client, never an exception into the upstream parser
            log.exception("unexpected error answering %s %s", req.method, req.path)
            resp = error_response(exc, answer_headers)
        conn.answer(req, self._done(req, route, resp, rid, trace_id, client, upstream, ""))  # type: ignore

    # --- the parts that wait, in a task ----------------------------------------
    async def _after_auth_async(self, req: Request, conn: HttpProtocol, intake: tuple, route, params: dict,
                                answer_headers: list[tuple[bytes, bytes]], coro, waiting) -> Response | None:
        try:
            identity = await _resume(coro, waiting)
            self._admitted(req, conn, intake, route, params, answer_headers, identity)
        except MeshkitError as exc:
            return self._done(req, route, error_response(exc, answer_headers), intake[0], intake[1],  # type: ignore
                              intake[10], "", "")
        return None

    async def _enter_async(self, req: Request, conn: HttpProtocol, intake: tuple, route, params: dict,
                           answer_headers: list[tuple[bytes, bytes]], identity, deadline: float) -> Response | None:
        try:
            await route.guard.enter()
        except MeshkitError as exc:  # shed
            return self._done(req, route, error_response(exc, answer_headers), intake[0], intake[1],  # type: ignore
                              intake[10], "", "")
        self._send(req, conn, intake, route, params, answer_headers, identity, deadline)
        return None

    def _background(self, req: Request, conn: HttpProtocol, coro) -> None:
        """Run ``coro`` in a task; a :class:`Response` it returns (or an error it raises) is the answer.

        ``None`` means the coroutine handed the request on (to the upstream callback) and it answers.
        """
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(lambda t: self._background_done(t, req, conn))

    def _background_done(self, task: asyncio.Task, req: Request, conn: HttpProtocol) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            conn.answer(req, error_response(MeshkitError("the gateway is stopping", reason="stopping", status=503)))
            return
        exc = task.exception()
        if exc is None:
            resp = task.result()
            if resp is not None:  # _handle's answer; the others answered through conn themselves
                conn.answer(req, resp)
            return
        if not isinstance(exc, MeshkitError):
            log.error("unexpected error handling %s %s", req.method, req.path, exc_info=exc)
        conn.answer(req, self._done(req, None, error_response(exc), b"-", "", req.client, "", ""))  # type: ignore


async def _resume(coro, waiting):
    """Finish a coroutine that was driven by hand and is suspended on ``waiting`` (a future or ``None``).

    Once ``waiting`` is done, the coroutine itself becomes a task (its first step resumes it
    where it stopped), so from then on it runs with a current task like any other.
    """
    if waiting is None:
        await asyncio.sleep(0)
    elif not waiting.done():
        gate = asyncio.get_running_loop().create_future()
        waiting.add_done_callback(lambda _: gate.done() or gate.set_result(None))
        try:
            await gate
        except BaseException:
            coro.close()
            raise
    return await asyncio.ensure_future(coro)
