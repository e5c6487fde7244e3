"""Binds the request's :class:`~meshkit.basis.context.RequestContext` for its duration.

Reads ``x-request-id`` (carried when sane, made otherwise), the W3C
``traceparent`` (carried when valid, a new trace otherwise), the
``x-deadline-ms`` budget and the identity headers the gateway injected, via
:meth:`RequestContext.from_headers`. The response carries back the request id
and our ``traceparent``. A request whose budget is already spent is answered
504 without running the handler: nobody is waiting for the answer; one whose
budget runs out while the handler works is cancelled and answered 504 too.
"""

from __future__ import annotations

import asyncio
import logging
import time

from meshkit.basis import context
from meshkit.basis.context import (
    DEADLINE,
    IDENTITY_HEADERS,
    REQUEST_ID,
    TRACEPARENT,
    TRACESTATE,
    RequestContext,
)
from meshkit.basis.errors import GatewayTimeout
from meshkit.basis.middleware.asgi import (
    CONTEXT_KEY,
    STATUS_KEY,
    ASGIApp,
    Message,
    Receive,
    Scope,
    Send,
    response_headers,
)
from meshkit.basis.seal import SEAL, verify

# Only these headers are decoded; the rest of a request's headers cost nothing here.
_WANTED = frozenset(h.encode() for h in (REQUEST_ID, TRACEPARENT, TRACESTATE, DEADLINE, SEAL, *IDENTITY_HEADERS))
log = logging.getLogger("meshkit.identity")
_warned = [0.0]


def context_from_scope(scope: Scope, identity_key: bytes | None = None) -> RequestContext:
    """Build the request context from an ASGI scope's headers.

    With ``identity_key``, the identity headers count only under a valid seal of the
    gateway (:mod:`meshkit.basis.seal`); without one the call is anonymous.
    """
    wanted = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"] if k in _WANTED}
    ctx = RequestContext.from_headers(wanted)
    if identity_key is not None and ctx.identity is not None:
        if verify(wanted, identity_key, time.time()):
            ctx.seal = wanted[SEAL]
        else:
            ctx.identity = None
            now = time.monotonic()
            if now - _warned[0] > 10.0:  # once per 10 s: a flood of forgeries must not flood the log
                _warned[0] = now
                client = scope.get("client")
                log.warning("identity headers without a valid gateway seal from %s ignored: the call is "
                            "anonymous (a caller bypassing the gateway, or another MESHKIT_IDENTITY_KEY)",
                            client[0] if client else "?")
    return ctx


class ContextMiddleware:
    """Makes the request context current while the request is handled."""

    def __init__(self, app: ASGIApp, identity_key: bytes | None = None) -> None:
        self.app = app
        self.identity_key = identity_key

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        ctx = context_from_scope(scope, self.identity_key)
        scope[CONTEXT_KEY] = ctx
        if ctx.deadline is not None and ctx.deadline <= time.monotonic():
            raise GatewayTimeout(
                "the caller's deadline (x-deadline-ms) had passed before the request was handled; "
                "the caller should give the call a larger budget",
                reason="deadline_exceeded",
            )
        extra = response_headers(ctx)

        async def send_with_ids(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), *extra]
                scope[STATUS_KEY] = message["status"]
            await send(message)

        token = context.bind(ctx)
        try:
            if ctx.deadline is None:
                await self.app(scope, receive, send_with_ids)
            else:
                await self._within_deadline(ctx, scope, receive, send_with_ids)
        finally:
            context.reset(token)

    async def _within_deadline(self, ctx: RequestContext, scope: Scope, receive: Receive, send: Send) -> None:
        # Work past the caller's deadline is wasted: the caller has given up. Cancel it.
        budget = asyncio.timeout(ctx.deadline - time.monotonic())
        try:
            async with budget:
                await self.app(scope, receive, send)
        except TimeoutError:
            if not budget.expired() or STATUS_KEY in scope:
                raise  # the handler's own timeout, or an answer already under way
            raise GatewayTimeout(
                "the caller's deadline (x-deadline-ms) passed while the request was handled",
                reason="deadline_exceeded",
            ) from None
