"""Lean HTTP/1.1 transport on asyncio protocols (client pool, used by the service client and the gateway).

Public surface::

    t = HttpTransport(max_connections_per_host=100)
    r = await t.request("127.0.0.1", 8000, "GET", "/items?limit=5", headers={"x-request-id": "…"}, timeout=2.0)
    r.status, r.headers, r.body, r.header("content-type"), r.json()
    async with await t.stream("127.0.0.1", 8000, "GET", "/big") as s:
        async for chunk in s.iter_body(): ...
    t.stats()            # {"host:port": PoolStats(open, idle, in_use, ...)}
    await t.close()

Errors (plain exceptions, translated by callers): :class:`TransportError` >
:class:`ConnectError` (nothing sent), :class:`RequestTimeout` >
:class:`PoolTimeout` (nothing sent), :class:`ConnectionClosed` (sent, answer
incomplete), :class:`ProtocolError`; bad input raises :class:`InvalidRequest`
(a ``ValueError``).
"""

from meshkit.basis.http.errors import (
    ConnectError,
    ConnectionClosed,
    InvalidRequest,
    PoolTimeout,
    ProtocolError,
    RequestTimeout,
    TransportError,
)
from meshkit.basis.http.request import IDEMPOTENT
from meshkit.basis.http.response import HttpResponse, StreamingResponse
from meshkit.basis.http.stats import PoolStats
from meshkit.basis.http.transport import HttpTransport

__all__ = [
    "IDEMPOTENT",
    "ConnectError",
    "ConnectionClosed",
    "HttpResponse",
    "HttpTransport",
    "InvalidRequest",
    "PoolStats",
    "PoolTimeout",
    "ProtocolError",
    "RequestTimeout",
    "StreamingResponse",
    "TransportError",
]
