"""One error hierarchy for every meshkit service.

An error has a stable machine-readable ``reason``, a human ``message``, optional
``details`` and an HTTP ``status``. It is turned into the wire shape
``{"error": {"reason": ..., "message": ..., "details": ...}}`` in exactly one
place, :func:`error_body`; the HTTP status comes from the class. Adapters
translate foreign exceptions with ``raise SomeError(...) from exc``.
"""

from __future__ import annotations

from typing import Any

import orjson


class MeshkitError(Exception):
    """Base of every error meshkit raises on purpose."""

    status: int = 500
    reason: str = "internal"

    def __init__(
        self,
        message: str = "",
        *,
        reason: str | None = None,
        details: Any = None,
        status: int | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message or self.__class__.__doc__ or self.reason)
        self.message = message or (self.__class__.__doc__ or self.reason).strip()
        if reason is not None:
            self.reason = reason
        if status is not None:
            self.status = status
        self.details = details
        self.headers = headers or {}

    def to_dict(self) -> dict[str, Any]:
        err: dict[str, Any] = {"reason": self.reason, "message": self.message}
        if self.details is not None:
            err["details"] = self.details
        return {"error": err}

    def __repr__(self) -> str:
        return f"{type(self).__name__}(reason={self.reason!r}, message={self.message!r})"


class BadRequest(MeshkitError):
    """The request is malformed."""

    status, reason = 400, "bad_request"


class Unauthorized(MeshkitError):
    """Authentication is required or has failed."""

    status, reason = 401, "unauthorized"


class Forbidden(MeshkitError):
    """The caller may not do this."""

    status, reason = 403, "forbidden"


class NotFound(MeshkitError):
    """No such resource."""

    status, reason = 404, "not_found"


class MethodNotAllowed(MeshkitError):
    """The method is not allowed on this resource."""

    status, reason = 405, "method_not_allowed"


class Conflict(MeshkitError):
    """The request conflicts with the current state of the resource."""

    status, reason = 409, "conflict"


class PreconditionFailed(MeshkitError):
    """A precondition (If-Match, version) does not hold."""

    status, reason = 412, "precondition_failed"


class PayloadTooLarge(MeshkitError):
    """The request body is too large."""

    status, reason = 413, "payload_too_large"


class Unprocessable(MeshkitError):
    """The request is well formed but its content is invalid."""

    status, reason = 422, "validation_failed"


class TooManyRequests(MeshkitError):
    """Too many requests; slow down."""

    status, reason = 429, "rate_limited"


class HeadersTooLarge(MeshkitError):
    """The request headers are too large."""

    status, reason = 431, "headers_too_large"


class Internal(MeshkitError):
    """Something went wrong on our side."""

    status, reason = 500, "internal"


class BadGateway(MeshkitError):
    """An upstream service answered badly."""

    status, reason = 502, "bad_gateway"


class Unavailable(MeshkitError):
    """The service is not available now; retry later."""

    status, reason = 503, "unavailable"


class GatewayTimeout(MeshkitError):
    """An upstream service did not answer in time."""

    status, reason = 504, "timeout"


class ConfigError(MeshkitError):
    """A setting or configuration file is invalid. Raised at start-up, never to a client."""

    status, reason = 500, "config_error"


def error_body(exc: BaseException) -> tuple[int, bytes, dict[str, str]]:
    """Map any exception to ``(status, JSON body, extra headers)``.

    This is the one place where errors become HTTP. Unknown exceptions become a
    500 with a generic message: a stack trace never reaches a client.
    """
    if not isinstance(exc, MeshkitError):
        exc = Internal("internal error")
    return exc.status, orjson.dumps(exc.to_dict()), exc.headers


def from_response(status: int, body: bytes) -> MeshkitError:
    """Rebuild a :class:`MeshkitError` from another service's error response."""
    try:
        err = orjson.loads(body)["error"]
        reason, message, details = err["reason"], err.get("message", ""), err.get("details")
    except Exception:
        reason, message, details = "upstream_error", body[:200].decode("utf-8", "replace"), None
    cls = _BY_STATUS.get(status, MeshkitError)
    return cls(message, reason=reason, details=details, status=status)


_BY_STATUS: dict[int, type[MeshkitError]] = {
    c.status: c
    for c in (
        BadRequest, Unauthorized, Forbidden, NotFound, MethodNotAllowed, Conflict,
        PreconditionFailed, PayloadTooLarge, Unprocessable, TooManyRequests,
        HeadersTooLarge, Internal, BadGateway, Unavailable, GatewayTimeout,
    )
}
