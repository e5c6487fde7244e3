"""Outermost step: every exception becomes the one JSON error shape.

A :class:`~meshkit.basis.errors.MeshkitError` is mapped by
:func:`~meshkit.basis.errors.error_body`; Starlette's own ``HTTPException`` (its
404 and 405) is translated to ours first; anything else is logged with its
traceback and answered with a generic 500 in the same shape. A stack trace never
reaches the client.
"""

from __future__ import annotations

import logging

from starlette.exceptions import HTTPException

from meshkit.basis import context
from meshkit.basis.errors import _BY_STATUS, MeshkitError, MethodNotAllowed, NotFound, error_body
from meshkit.basis.middleware.asgi import (
    CONTEXT_KEY,
    STATUS_KEY,
    ASGIApp,
    Receive,
    Scope,
    Send,
    response_headers,
)

logger = logging.getLogger("meshkit.errors")
#: 5xx reasons that are answers, not failures (a probe before registration, a request
#: during the drain): the access log records them; a warning would only be noise.
_ANSWERS = frozenset({"not_ready", "shutting_down"})


def translate(exc: BaseException, scope: Scope | None = None) -> BaseException:
    """Starlette's ``HTTPException`` as our error; any other exception unchanged."""
    if not isinstance(exc, HTTPException):
        return exc
    method = scope.get("method", "") if scope else ""
    path = scope.get("path", "") if scope else ""
    headers = dict(exc.headers or {})
    # Starlette's router raises these with the bare status phrase as detail; a handler's
    # own HTTPException(404, "no such product") keeps its message.
    if exc.status_code == 404 and exc.detail == "Not Found":
        return NotFound(f"no route for {method} {path}: check the path", reason="no_route", headers=headers)
    if exc.status_code == 405 and exc.detail == "Method Not Allowed":
        allow = headers.get("Allow") or headers.get("allow") or ""
        return MethodNotAllowed(
            f"{method} is not allowed on {path}; allowed: {allow}", details={"allow": allow}, headers=headers
        )
    cls = _BY_STATUS.get(exc.status_code)
    if cls is not None:
        return cls(str(exc.detail), headers=headers)
    return MeshkitError(str(exc.detail), reason="http_error", status=exc.status_code, headers=headers)


def status_of(exc: BaseException) -> int:
    """The HTTP status an exception will be answered with (for logs and metrics)."""
    if isinstance(exc, MeshkitError):
        return exc.status
    if isinstance(exc, HTTPException):
        return exc.status_code
    return 500


class ErrorMiddleware:
    """Maps exceptions raised below it to JSON error responses."""

    def __init__(self, app: ASGIApp, *, service: str = "") -> None:
        self.app = app
        self.service = service

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        try:
            await self.app(scope, receive, send)
        except Exception as raw:
            # The context step (right inside) records the status once a response started.
            started = STATUS_KEY in scope
            exc = translate(raw, scope)
            ctx = scope.get(CONTEXT_KEY)
            # The context middleware has already unbound the context; bind it again
            # so this log line carries the request and trace ids.
            token = context.bind(ctx)
            try:
                if not isinstance(exc, MeshkitError):
                    logger.error(
                        "unhandled %s in %s %s", type(raw).__name__, scope.get("method"), scope.get("path"),
                        exc_info=raw,
                    )
                elif exc.status >= 500 and exc.reason not in _ANSWERS:
                    logger.warning("%s %s failed: %r", scope.get("method"), scope.get("path"), exc)
                if started:
                    # Too late for an error response: the server closes the connection.
                    logger.error("error after the response started; the client gets a truncated answer")
                    return
            finally:
                context.reset(token)
            status, body, headers = error_body(exc)
            await send_error(send, status, body, headers, ctx)


async def send_error(send: Send, status: int, body: bytes, headers: dict[str, str], ctx=None) -> None:
    """Send a complete JSON error response, with the request's correlation headers."""
    raw = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        *((k.lower().encode("latin-1"), str(v).encode("latin-1")) for k, v in headers.items()),
    ]
    if ctx is not None:
        raw.extend(response_headers(ctx))
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


__all__ = ["ErrorMiddleware", "send_error", "status_of", "translate"]
