"""The embedded HTTP server: bound by us, started and stopped inside our asyncio lifecycle.

The runtime binds the listening socket itself (so port 0 yields a real port to
register before serving), owns signal handling, and drains requests through its
own gate before it stops the server. Both candidates allow that:

- granian (``granian.server.embed.Server``; Rust/hyper HTTP, Python callbacks on
  our loop): we pass our bound socket as a ``SocketHolder`` over a dup of its fd;
  ``stop()`` closes the listener and lets in-flight requests finish.
- uvicorn (``uvicorn.Server(config).serve(sockets=[...])``, httptools parser on
  uvloop): signal capture disabled, ``should_exit`` to stop, graceful timeout.

Chosen by measurement: ``python -m bench.asgi_server`` serves the same trivial
Starlette route with each, embedded exactly as here, one process on uvloop,
``wrk -t1 -c50 -d4s --latency``, best of 2 alternating rounds, on the shared
2-core development machine (absolute numbers move with its load; the ratios held
over repeated runs)::

    server   stack      req/s   p50 ms  p99 ms
    granian  bare       39564    1.13    2.85
    uvicorn  bare       25025    1.69    5.43
    granian  service    19938    1.98    7.88   (our full middleware stack)
    uvicorn  service     9228    5.47   18.41

granian serves 1.6x the requests of uvicorn on a bare router (2.2x with our
stack), with 1.9-2.3x lower p99, and supports every lifecycle step we need
(our socket, no signal handlers of its own, graceful stop that finishes
in-flight requests). It is the default (``settings.http_server``); uvicorn
stays selectable with ``MESHKIT_HTTP_SERVER=uvicorn`` (granian's embed API is
marked experimental upstream, and uvicorn is the fallback if it breaks).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from typing import Protocol

from meshkit.basis.errors import ConfigError
from meshkit.basis.middleware.asgi import ASGIApp

logger = logging.getLogger("meshkit.server")

SERVERS = ("granian", "uvicorn")


class EmbeddedServer(Protocol):
    """An HTTP server running an ASGI app on a socket we bound."""

    async def serve(self) -> None:
        """Serve until :meth:`stop`; returns once stopped."""

    def stop(self) -> None:
        """Stop accepting, let in-flight requests finish, then return from :meth:`serve`."""


def bind_socket(host: str, port: int, backlog: int = 2048) -> socket.socket:
    """A listening TCP socket on ``host:port`` (0 = a free port: read ``getsockname()``)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(backlog)
        sock.setblocking(False)
    except OSError as exc:
        sock.close()
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror}; choose another port (0 = any free one)") from exc
    return sock


def create_server(kind: str, app: ASGIApp, sock: socket.socket, *, graceful_timeout: float = 5.0) -> EmbeddedServer:
    """The server named ``kind`` (``granian`` or ``uvicorn``) for ``app`` on ``sock``."""
    if kind == "granian":
        return GranianServer(app, sock)
    if kind == "uvicorn":
        return UvicornServer(app, sock, graceful_timeout=graceful_timeout)
    raise ConfigError(f"unknown http_server {kind!r}: use one of {', '.join(SERVERS)}")


class GranianServer:
    """granian's embedded server on our socket."""

    def __init__(self, app: ASGIApp, sock: socket.socket) -> None:
        from granian._granian import SocketHolder
        from granian.constants import HTTPModes, Interfaces
        from granian.log import LogLevels
        from granian.server.embed import Server

        self.sock = sock
        host, port = sock.getsockname()[:2]
        backlog = 2048

        class _Server(Server):
            def _init_shared_socket(inner) -> None:
                # granian would bind its own; hand it ours (a dup: granian closes what it gets).
                inner._ssp = None
                inner._shd = SocketHolder(os.dup(sock.fileno()), False, backlog)

        self._server = _Server(
            app,
            address=host,
            port=port,
            interface=Interfaces.ASGINL,  # no ASGI lifespan: our lifecycle runs start-up and shutdown
            http=HTTPModes.http1,
            websockets=False,
            backlog=backlog,
            log_enabled=True,
            log_level=LogLevels.error,
            # Route granian's own (error-level) lines to the root logger, i.e. our JSON handler.
            log_dictconfig={"loggers": {"_granian": {"handlers": [], "propagate": True}}},
        )

    async def serve(self) -> None:
        await self._server.serve()

    def stop(self) -> None:
        # Our copy of the listening fd would keep the port accepting into the backlog.
        with contextlib.suppress(OSError):
            self.sock.close()
        self._server.stop()


class UvicornServer:
    """uvicorn (httptools, uvloop) on our socket, without its signal handling."""

    def __init__(self, app: ASGIApp, sock: socket.socket, *, graceful_timeout: float = 5.0) -> None:
        import uvicorn

        class _Server(uvicorn.Server):
            @contextlib.contextmanager
            def capture_signals(self):  # the runtime owns SIGTERM / SIGINT
                yield

        config = uvicorn.Config(
            app,
            lifespan="off",
            http="httptools",
            ws="none",
            loop="none",
            log_config=None,
            access_log=False,
            server_header=False,
            date_header=False,
            timeout_graceful_shutdown=max(1, int(graceful_timeout + 0.999)),
            backlog=2048,
        )
        self.sock = sock
        self._server = _Server(config)

    async def serve(self) -> None:
        await self._server.serve(sockets=[self.sock])

    def stop(self) -> None:
        self._server.should_exit = True


async def stop_server(server: EmbeddedServer, task: asyncio.Task, timeout: float) -> None:
    """Stop ``server`` whose :meth:`serve` runs in ``task``; cancel it after ``timeout`` seconds."""
    server.stop()
    try:
        async with asyncio.timeout(timeout):
            await asyncio.shield(task)
    except TimeoutError:
        logger.warning("the HTTP server did not stop within %.1fs; cancelling it", timeout)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
