"""Errors of the HTTP transport: plain ``Exception`` subclasses, translated by callers.

The transport sits below :mod:`meshkit.basis.errors` on purpose: it does not know
whether a failed upstream call means 502, 503 or 504 to the caller's caller, so
the service client and the gateway translate these (``raise BadGateway(...) from
exc``). What they need to decide is whether a retry is safe, so every error says
whether the request may have reached the server: :attr:`TransportError.request_sent`.

- :class:`ConnectError`: no connection could be made (refused, unreachable, name
  not resolved, connect timeout). Nothing was sent: always safe to retry.
- :class:`PoolTimeout`: the deadline passed while waiting for a free connection
  (the per-host limit was reached). Nothing was sent: safe to retry elsewhere.
- :class:`RequestTimeout`: the deadline passed after the request was written (or
  while connecting, when the caller's deadline is shorter than the connect timeout).
- :class:`ConnectionClosed`: the connection ended before the whole answer came.
  The request was sent; the server may have acted on it.
- :class:`ProtocolError`: the server's answer is not valid HTTP/1.1.

:class:`InvalidRequest` is different: the caller asked for something that cannot
be sent (a CR/LF in a header, a space in the target). It is a ``ValueError``, not
a ``TransportError``, because retrying it can never help.
"""

from __future__ import annotations


class TransportError(Exception):
    """Base of every failure to get an answer from an upstream."""

    #: True when some of the request may have reached the server.
    request_sent: bool = True

    def __init__(self, message: str, *, host: str = "", port: int = 0) -> None:
        super().__init__(message)
        self.host = host
        self.port = port


class ConnectError(TransportError):
    """No connection could be made; nothing was sent, so a retry is always safe."""

    request_sent = False


class RequestTimeout(TransportError):
    """The request's deadline passed before the complete answer arrived."""

    def __init__(self, message: str, *, host: str = "", port: int = 0, request_sent: bool = True) -> None:
        super().__init__(message, host=host, port=port)
        self.request_sent = request_sent


class PoolTimeout(RequestTimeout):
    """The deadline passed while waiting for a free connection; nothing was sent."""

    def __init__(self, message: str, *, host: str = "", port: int = 0) -> None:
        super().__init__(message, host=host, port=port, request_sent=False)


class ConnectionClosed(TransportError):
    """The connection ended after the request was sent and before the answer was complete.

    ``reused`` says the connection had served earlier requests; ``received`` says
    some of the answer had arrived. ``reused and not received`` is the signature
    of a keep-alive connection the server had already closed (``stale``): the
    transport retries those itself for idempotent methods, once.
    """

    def __init__(
        self, message: str, *, host: str = "", port: int = 0, reused: bool = False, received: bool = False
    ) -> None:
        super().__init__(message, host=host, port=port)
        self.reused = reused
        self.received = received

    @property
    def stale(self) -> bool:
        """True when a reused connection died before any byte of the answer arrived."""
        return self.reused and not self.received


class ProtocolError(TransportError):
    """The upstream's answer is not valid HTTP/1.1 (the connection is discarded)."""


class InvalidRequest(ValueError):
    """The request cannot be put on the wire as given (fix the caller; retrying never helps)."""
