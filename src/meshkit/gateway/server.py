"""The gateway's HTTP/1.1 server: listening, and what spans connections.

Each connection is a :class:`~meshkit.gateway.protocol.HttpProtocol` (parsing,
keep-alive, pipelining, limits, the ``fast`` hook). Here:

- idle keep-alive connections and slow header senders are closed by a sweeper
  that runs once a second (no timer per request);
- TLS: pass an ``ssl.SSLContext`` to :func:`serve`;
- several processes on one port: ``reuse_port`` (SO_REUSEPORT);
- graceful stop: stop accepting, close idle connections, let busy ones finish.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Callable

from meshkit.basis.errors import MeshkitError
from meshkit.gateway.messages import Handler, Limits
from meshkit.gateway.protocol import FastHook, HttpProtocol


class Server:
    """A listening HTTP/1.1 server; build with :func:`serve`."""

    def __init__(self, handler: Handler, limits: Limits, scheme: str,
                 on_error: Callable[[BaseException], None], fast: FastHook | None = None) -> None:
        self.handler = handler
        self.fast = fast
        self.limits = limits
        self.scheme = scheme
        self.on_error = on_error
        self.loop = asyncio.get_running_loop()
        self.connections: set[HttpProtocol] = set()
        self.stopping = False
        self._server: asyncio.base_events.Server | None = None
        self._sweeper: asyncio.Task | None = None

    @property
    def port(self) -> int:
        assert self._server is not None
        return self._server.sockets[0].getsockname()[1]

    async def _sweep(self) -> None:
        # Once a second is plenty for timeouts measured in seconds, and costs nothing per request.
        while True:
            await asyncio.sleep(1.0)
            now = self.loop.time()
            for conn in list(self.connections):
                if conn.transport is None or conn.transport.is_closing():
                    continue
                if conn.reading_since is not None and now - conn.reading_since > self.limits.request_read_timeout:
                    if conn.task is None:
                        conn._fail(MeshkitError("request not received in time", reason="request_timeout", status=408))
                elif conn.idle() and now - conn.last_active > self.limits.keepalive_timeout:
                    conn.transport.close()

    async def stop(self, drain_timeout: float = 10.0) -> None:
        """Stop accepting, close idle connections, wait for busy ones (up to ``drain_timeout``)."""
        self.stopping = True
        if self._server is not None:
            self._server.close()
        if self._sweeper is not None:
            self._sweeper.cancel()
        deadline = time.monotonic() + drain_timeout
        while self.connections and time.monotonic() < deadline:
            for conn in list(self.connections):
                if conn.idle() and conn.transport is not None:
                    conn.transport.close()
            await asyncio.sleep(0.02)
        for conn in list(self.connections):
            if conn.transport is not None:
                conn.transport.abort()


async def serve(handler: Handler, host: str, port: int, *, limits: Limits | None = None,
                ssl_context: ssl.SSLContext | None = None, backlog: int = 1024,
                on_error: Callable[[BaseException], None] = lambda exc: None,
                fast: FastHook | None = None, reuse_port: bool = False) -> Server:
    """Listen on ``host:port`` (0 = a free port) and answer with ``handler`` (after ``fast``, if given).

    When ``handler`` is a bound method of an object that also has a ``fast`` method (the
    gateway's :class:`~meshkit.gateway.proxy.Proxy`), that method is the ``fast`` hook.
    ``reuse_port`` lets several worker processes listen on one port (SO_REUSEPORT).
    """
    if fast is None:
        fast = getattr(getattr(handler, "__self__", None), "fast", None)
    server = Server(handler, limits or Limits(), "https" if ssl_context else "http", on_error, fast)
    server._server = await server.loop.create_server(
        lambda: HttpProtocol(server), host, port, ssl=ssl_context, backlog=backlog, reuse_address=True,
        reuse_port=reuse_port or None)
    server._sweeper = server.loop.create_task(server._sweep())
    return server
