"""``HttpTransport``: pooled HTTP/1.1 requests to many upstreams, the hot path of every upstream call.

One :class:`~meshkit.basis.http.pool.ConnectionPool` per ``(host, port)``. A
request serialises itself (:mod:`.request`), takes an idle connection without
awaiting when there is one, writes once, and waits on a single future guarded
by the pool's deadline timer (:meth:`ConnectionPool.watch`: one timer per pool,
not one per request) rather than ``asyncio.wait_for`` or ``asyncio.timeout``,
which would add a task cancellation round-trip per call.

:meth:`HttpTransport.send_nowait` is the same exchange without a coroutine or a
future, for a proxy's hot path: when an idle connection is ready it sends at
once and calls ``callback(response, exc)`` from the connection's
``data_received``; otherwise it sends nothing and returns ``False`` (the caller
then awaits :meth:`HttpTransport.request`, which can connect and wait).

Timeouts. ``timeout`` (per request, else the transport's default) is one
deadline for the whole call: waiting for a free connection, connecting (also
bounded by ``connect_timeout``), writing and receiving the complete answer —
for :meth:`HttpTransport.stream`, until the headers are in; each later body
read is bounded by ``read_timeout``. After a timeout the connection is closed
(the answer may still be on its way and would desynchronise the next one).

Stale keep-alive connections. A server may close an idle keep-alive connection
at any moment, and its FIN can cross our request on the wire. So: when a
*reused* connection ends before *any* byte of the answer arrived (whether or
not the kernel had accepted the whole request), the request is retried once,
on a newly opened connection, if its method is idempotent (GET, HEAD, PUT,
DELETE, OPTIONS, TRACE; RFC 9110 §9.2.2, RFC 9112 §9.3.1) — the server may have
received and even executed it, which only idempotency makes harmless. For any
other method the transport raises :class:`ConnectionClosed` with ``stale`` True
and leaves the decision to the caller (e.g. retry a POST that carries an
idempotency key). A fresh connection that fails that way is not retried.
Idle connections the loop already knows to be closed are skipped silently.

The transport binds to the running loop on first use; use it from one loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from meshkit.basis.http.connection import Connection
from meshkit.basis.http.errors import ConnectionClosed, TransportError
from meshkit.basis.http.pool import ConnectionPool
from meshkit.basis.http.request import IDEMPOTENT, Headers, encode_request
from meshkit.basis.http.response import HttpResponse, StreamingResponse
from meshkit.basis.http.stats import PoolStats


class HttpTransport:
    """A pooled HTTP/1.1 client for many upstreams.

    ``max_connections_per_host`` bounds each pool; ``idle_timeout`` closes
    connections idle that long (keep it below the upstream's keep-alive
    timeout: uvicorn's is 5 s, so the default is 4 s); ``connect_timeout``
    bounds one connect; ``timeout`` is the default per-request deadline
    (``None``: no deadline); ``read_timeout`` bounds each body read of a stream.
    """

    def __init__(
        self,
        *,
        max_connections_per_host: int = 100,
        idle_timeout: float = 4.0,
        connect_timeout: float = 5.0,
        timeout: float | None = 30.0,
        read_timeout: float | None = 30.0,
    ) -> None:
        if max_connections_per_host < 1:
            raise ValueError("max_connections_per_host must be at least 1")
        self.max_connections_per_host = max_connections_per_host
        self.idle_timeout = idle_timeout
        self.connect_timeout = connect_timeout
        self.timeout = timeout
        self.read_timeout = read_timeout
        self._pools: dict[tuple[str, int], ConnectionPool] = {}
        self._closed = False
        self._tasks: set[asyncio.Task] = set()

    def _pool(self, host: str, port: int) -> ConnectionPool:
        if self._closed:
            raise TransportError("the HTTP transport is closed: create a new one", host=host, port=port)
        pool = self._pools[(host, port)] = ConnectionPool(
            asyncio.get_running_loop(),
            host,
            port,
            max_size=self.max_connections_per_host,
            idle_timeout=self.idle_timeout,
            connect_timeout=self.connect_timeout,
        )
        return pool

    async def request(
        self,
        host: str,
        port: int,
        method: str,
        target: str,
        headers: Headers | None = None,
        body: bytes = b"",
        timeout: float | None = None,
    ) -> HttpResponse:
        """Send one request and return the complete answer (body buffered).

        ``target`` is the path and query (``/items?limit=5``); ``headers`` a dict
        of str or a list of ``(name, value)`` bytes (or str) pairs. Raises a
        :class:`~meshkit.basis.http.errors.TransportError` subclass when no
        complete answer came; any status, 5xx included, is an answer.
        """
        pool = self._pools.get((host, port)) or self._pool(host, port)
        data, tail, close = encode_request(method, target, pool.host_line, headers, body)
        loop = pool.loop
        if timeout is None:
            timeout = self.timeout
        deadline = None if timeout is None else loop.time() + timeout
        conn, response = await _exchange(pool, method, data, tail, close, deadline, timeout, stream=False)
        pool.release(conn)
        return response

    def send_nowait(
        self,
        host: str,
        port: int,
        method: str,
        target: str,
        headers: Headers | None,
        body: bytes,
        timeout: float | None,
        callback: Callable[[HttpResponse | None, BaseException | None], None],
    ) -> bool:
        """Send on an idle keep-alive connection now, if one is ready; else send nothing, return ``False``.

        When it returns ``True``, ``callback(response, None)`` or ``callback(None,
        exc)`` (a :class:`TransportError`) runs exactly once, later, from the
        loop: the answer is buffered as with :meth:`request`, under the same
        deadline and stale-connection rules (a stale idempotent request is resent
        on a new connection in a task, then the callback runs).
        Raises :class:`~meshkit.basis.http.errors.InvalidRequest` for bad input.
        """
        pool = self._pools.get((host, port))
        if pool is None or not pool._idle:
            return False
        data, tail, close = encode_request(method, target, pool.host_line, headers, body)
        conn = pool.try_acquire()
        if conn is None:
            return False
        pool.requests += 1
        if timeout is None:
            timeout = self.timeout
        deadline = None
        if timeout is not None:
            deadline = pool.loop.time() + timeout
            pool.watch(conn, deadline, timeout)
        conn.cb_state = (pool, callback, method, data, tail, close, deadline, timeout, conn.responses > 0)
        conn.send_cb(data, tail, method == "HEAD", close, self._answered)
        return True

    def _answered(self, conn: Connection, response: HttpResponse | None, exc: BaseException | None) -> None:
        pool, callback, method, data, tail, close, deadline, timeout, reused = conn.cb_state  # type: ignore[misc]
        conn.cb_state = None
        if deadline is not None:
            pool.unwatch(conn)
        if exc is None:
            pool.release(conn)
            callback(response, None)
            return
        pool.discard(conn)
        if reused and isinstance(exc, ConnectionClosed) and exc.stale and method in IDEMPOTENT:
            pool.stale_retries += 1
            task = pool.loop.create_task(self._resend_fresh(pool, method, data, tail, close, deadline, timeout,
                                                            callback))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            return
        callback(None, exc)

    async def _resend_fresh(self, pool: ConnectionPool, method: str, data: bytes, tail: bytes | None, close: bool,
                            deadline: float | None, timeout: float | None,
                            callback: Callable[[HttpResponse | None, BaseException | None], None]) -> None:
        # The stale-connection retry of send_nowait: once, on a newly opened connection.
        try:
            conn, response = await _exchange(pool, method, data, tail, close, deadline, timeout, stream=False,
                                             fresh=True)
            pool.release(conn)
        except Exception as exc:
            callback(None, exc)
            return
        callback(response, None)

    async def stream(
        self,
        host: str,
        port: int,
        method: str,
        target: str,
        headers: Headers | None = None,
        body: bytes = b"",
        timeout: float | None = None,
        read_timeout: float | None = None,
    ) -> StreamingResponse:
        """Send one request and return as soon as the status and headers are in.

        ``timeout`` covers everything up to the headers; each body read then waits
        at most ``read_timeout`` (else the transport's). Always finish with
        ``await response.aclose()`` (or ``async with``).
        """
        pool = self._pools.get((host, port)) or self._pool(host, port)
        data, tail, close = encode_request(method, target, pool.host_line, headers, body)
        loop = pool.loop
        if timeout is None:
            timeout = self.timeout
        if read_timeout is None:
            read_timeout = self.read_timeout
        deadline = None if timeout is None else loop.time() + timeout
        conn, (status, response_headers) = await _exchange(pool, method, data, tail, close, deadline, timeout,
                                                           stream=True)
        return StreamingResponse(status, response_headers, conn, pool, read_timeout)

    def stats(self) -> dict[str, PoolStats]:
        """One snapshot per upstream, keyed ``"host:port"``."""
        return {f"{host}:{port}": pool.stats() for (host, port), pool in self._pools.items()}

    async def close(self) -> None:
        """Close every connection; requests in flight fail, later ones raise ``TransportError``."""
        self._closed = True
        pools, self._pools = list(self._pools.values()), {}
        for pool in pools:
            pool.close()
        await asyncio.sleep(0)  # let the transports run their close callbacks

    async def __aenter__(self) -> HttpTransport:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()


async def _exchange(pool, method: str, data, tail, close: bool, deadline: float | None, timeout: float | None,
                    *, stream: bool, fresh: bool = False):
    """Send on a pooled connection and wait for the answer (``stream``: its head only).

    A reused connection that the server had already closed (``stale``) is retried once on
    a fresh one for idempotent methods; the connection is discarded on any failure.
    ``fresh``: start on a newly opened connection (and so never retry).
    Returns ``(connection, what the connection's future gave)``.
    """
    while True:
        conn = None if fresh else pool.try_acquire()
        if conn is None:
            conn = await pool.acquire(deadline, fresh=fresh)
        pool.requests += 1
        reused = conn.responses > 0
        fut = conn.send(data, tail, head=method == "HEAD", stream=stream, close=close)
        if deadline is not None:
            pool.watch(conn, deadline, timeout)
        try:
            return conn, await fut
        except ConnectionClosed as exc:
            pool.discard(conn)
            if reused and exc.stale and not fresh and method in IDEMPOTENT:
                pool.stale_retries += 1
                fresh = True
                continue
            raise
        except BaseException:
            pool.discard(conn)
            raise
        finally:
            if deadline is not None:
                pool.unwatch(conn)
