"""What the gateway's HTTP server hands a handler and takes back: requests, responses, limits.

Kept apart from the server loop (``server.py``) so that the proxy, the admin API
and the aggregator depend on these small types, not on the protocol machinery.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

from meshkit.basis.errors import BadRequest, MeshkitError, PayloadTooLarge, error_body

_REASONS = {
    100: "Continue", 200: "OK", 201: "Created", 202: "Accepted", 203: "Non-Authoritative Information",
    204: "No Content", 206: "Partial Content", 301: "Moved Permanently", 302: "Found", 303: "See Other",
    304: "Not Modified", 307: "Temporary Redirect", 308: "Permanent Redirect", 400: "Bad Request",
    401: "Unauthorized", 403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed",
    406: "Not Acceptable", 408: "Request Timeout", 409: "Conflict", 410: "Gone", 412: "Precondition Failed",
    413: "Payload Too Large", 415: "Unsupported Media Type", 422: "Unprocessable Entity",
    429: "Too Many Requests", 431: "Request Header Fields Too Large", 500: "Internal Server Error",
    501: "Not Implemented", 502: "Bad Gateway", 503: "Service Unavailable", 504: "Gateway Timeout",
}
STATUS_LINES: dict[int, bytes] = {
    code: f"HTTP/1.1 {code} {reason}\r\n".encode() for code, reason in _REASONS.items()
}


def status_line(status: int) -> bytes:
    line = STATUS_LINES.get(status)
    if line is None:
        line = STATUS_LINES[status] = f"HTTP/1.1 {status} {_REASONS.get(status, 'Unknown')}\r\n".encode()
    return line


@dataclass(slots=True)
class Limits:
    """Protective limits of the listening server."""

    max_header_bytes: int = 16 * 1024
    max_body_bytes: int = 10 * 1024 * 1024
    keepalive_timeout: float = 75.0
    #: A request whose headers and body are not all in after this long is answered 408.
    request_read_timeout: float = 30.0
    #: Pipelined requests waiting on one connection before reading pauses.
    max_pipelined: int = 32
    #: Open client connections; one more is answered 503 and closed (each may buffer a body
    #: of up to ``max_body_bytes``: this bounds the memory clients can make the gateway hold).
    max_connections: int = 10_000


class Request:
    """One parsed request. Header names are lower-cased bytes; values are raw bytes."""

    __slots__ = ("body", "client", "headers", "keep_alive", "method", "path", "query", "scheme", "started", "version")

    def __init__(self, method: str, path: str, query: bytes, headers: list[tuple[bytes, bytes]],
                 body: bytes, keep_alive: bool, version: str, client: str, scheme: str) -> None:
        self.method = method
        self.path = path
        self.query = query
        self.headers = headers
        self.body = body
        self.keep_alive = keep_alive
        self.version = version
        self.client = client
        self.scheme = scheme
        self.started = time.perf_counter()

    def header(self, name: bytes) -> bytes | None:
        """First value of header ``name`` (lower-case bytes), or None."""
        for k, v in self.headers:
            if k == name:
                return v
        return None

    @property
    def target(self) -> str:
        """Path plus query string, as received."""
        return self.path + "?" + self.query.decode("latin-1") if self.query else self.path


class Response:
    """What a handler returns: a status, headers (bytes pairs) and a body.

    ``body`` is bytes, or ``stream`` an async iterator of chunks (sent chunked,
    or raw when the headers carry a content-length); ``on_close`` runs after sending.
    ``head``, when set, is the header lines already serialised (``name: value\r\n``
    each, no ``content-length``), sent before ``headers``: the proxy's hot path
    builds it in one pass over the upstream's answer.
    """

    __slots__ = ("body", "close", "head", "headers", "on_close", "status", "stream")

    def __init__(self, status: int, headers: list[tuple[bytes, bytes]] | None = None, body: bytes = b"",
                 stream: AsyncIterator[bytes] | None = None,
                 on_close: Callable[[], Awaitable[None]] | None = None) -> None:
        self.status = status
        self.headers = headers if headers is not None else []
        self.body = body
        self.stream = stream
        self.on_close = on_close
        self.close = False
        self.head: bytes | None = None


Handler = Callable[[Request], Awaitable[Response]]


def error_response(exc: BaseException, extra: list[tuple[bytes, bytes]] | None = None) -> Response:
    """The JSON error shape for ``exc`` (through :func:`error_body`, the one mapping)."""
    status, body, headers = error_body(exc)
    hdrs = [(b"content-type", b"application/json")]
    hdrs += [(k.lower().encode("latin-1"), str(v).encode("latin-1")) for k, v in headers.items()]
    if extra:
        hdrs += extra
    return Response(status, hdrs, body)


#: Request headers that frame the body: the only ones :func:`request_framing` looks at.
_FRAMING = frozenset({b"content-length", b"transfer-encoding", b"expect"})


def request_framing(headers: list[tuple[bytes, bytes]], max_body_bytes: int) -> tuple[bool, bool]:
    """``(has a body, expects 100-continue)`` of a request head (names lower-cased); raises the
    :class:`MeshkitError` to answer for a bad or too large Content-Length or a transfer coding
    other than chunked."""
    body = expect = False
    for k, v in headers:
        if k not in _FRAMING:  # one set probe per header: the common case
            continue
        if k == b"content-length":
            try:
                n = int(v)
            except ValueError:
                raise BadRequest("invalid content-length") from None
            if n > max_body_bytes:
                raise PayloadTooLarge(f"request body of {n} bytes exceeds the limit of {max_body_bytes}")
            body = n > 0
        elif k == b"transfer-encoding":
            # Only chunked is understood (RFC 9112 §6.1: 501 for another coding); a body still
            # gzip-coded would be passed on without the coding that says so.
            if v.strip().lower() != b"chunked":
                raise MeshkitError(f"transfer coding {v[:40].decode('latin-1')!r} is not supported; "
                                   "send the body with content-length or chunked only",
                                   reason="unsupported_transfer_coding", status=501)
            body = True
        elif k == b"expect":
            expect = v.lower() == b"100-continue"
    return body, expect
