"""A service: an ASGI app plus typed settings, started by one call.

::

    service = Service(settings, routes=[Route("/items/{id}", get_item)], version="1.2.0")
    service.add_check("database", ping_db)        # readiness: async () -> None, raises on failure
    service.on_startup(open_db)                   # async fn(service) -> None
    service.on_shutdown(close_db)
    run(service)                                  # blocking; exits 0 after a graceful stop

Every service gets ``/livez``, ``/readyz``, ``/metrics``, JSON logs, request ids,
trace and deadline propagation and the JSON error shape without writing them
(see :mod:`meshkit.basis.middleware` for the order of the steps).

Lifecycle. Start: configure logging → open the registry → start the registry
view → create the service client → run start-up hooks → bind the socket (port 0
= a free port) → serve → register. Ready = registered. Stop (SIGTERM/SIGINT, or
:meth:`Service.stop`): deregister first → refuse new requests (503 with
``Connection: close``) → let in-flight ones finish within ``drain_timeout`` →
stop the server → run shutdown hooks (reverse order) → close client, view and
registry.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from starlette.routing import BaseRoute, Router

from meshkit.basis.health import Check, HealthChecks, ops_routes
from meshkit.basis.instance import Instance
from meshkit.basis.logs import bind_labels, configure_logging
from meshkit.basis.logs import flush as flush_logs
from meshkit.basis.metrics import ServiceMetrics
from meshkit.basis.middleware import StackOptions, build_stack
from meshkit.basis.middleware.asgi import ASGIApp, Receive, Scope, Send
from meshkit.basis.seal import parse_key
from meshkit.basis.server import EmbeddedServer, bind_socket, create_server, stop_server
from meshkit.basis.settings import ServiceSettings

logger = logging.getLogger("meshkit.service")

Hook = Callable[["Service"], Awaitable[None]]


class Service:
    """One service: routes, settings, checks and hooks; started by :func:`run` or
    :func:`meshkit.basis.testing.running`.

    ``service.state`` holds the app's objects (engine, repositories); handlers
    reach the service as ``request.app`` (so ``request.app.state["repo"]``).
    ``middleware`` are extra ASGI wrappers (``fn(app) -> app``) placed innermost,
    just around the router.
    """

    def __init__(
        self,
        settings: ServiceSettings,
        routes: Sequence[BaseRoute] = (),
        *,
        version: str | None = None,
        middleware: Sequence[Callable[[ASGIApp], ASGIApp]] = (),
    ) -> None:
        self.settings = settings
        self.name = settings.name
        self.version = version or settings.version
        self.state: dict[str, Any] = {}
        self.metrics = ServiceMetrics(self.name)
        self.checks = HealthChecks(timeout=settings.check_timeout)
        self.router = Router(routes=list(routes))
        # /livez, /readyz, /metrics by exact path before the service's routes: a
        # catch-all route cannot shadow them, and the service's requests do not pay
        # for matching three extra patterns first.
        self._ops = {route.path: route for route in ops_routes(self)}
        inner: ASGIApp = self._route
        for wrap in reversed(middleware):
            inner = wrap(inner)
        self._inner = inner
        options = StackOptions(
            access_log=settings.access_log,
            request_metrics=settings.request_metrics,
            max_concurrency=settings.max_concurrency,
            max_body_bytes=settings.max_body_bytes,
            identity_key=parse_key(settings.identity_key.get_secret_value() if settings.identity_key else None),
        )
        self.app, self.gate = build_stack(self._inner, metrics=self.metrics, options=options, service=self.name)
        self._startup: list[Hook] = []
        self._shutdown: list[Hook] = []
        # Set during start().
        self.registry: Any = None
        self.view: Any = None
        self.client: Any = None
        self.instance: Instance | None = None
        self.registration: Any = None
        self.registered = False
        self.started_at: float | None = None
        self._server: EmbeddedServer | None = None
        self._serve_task: asyncio.Task[None] | None = None
        self._running = False
        self._force = asyncio.Event()

    # -- configuration -----------------------------------------------------------------

    def add_check(self, name: str, check: Check, timeout: float | None = None) -> None:
        """A readiness check for ``/readyz``: ``async () -> None`` that raises when not ready."""
        self.checks.add(name, check, timeout)

    def on_startup(self, hook: Hook) -> Hook:
        """Run ``await hook(service)`` on start, before the socket is bound (usable as a decorator)."""
        self._startup.append(hook)
        return hook

    def on_shutdown(self, hook: Hook) -> Hook:
        """Run ``await hook(service)`` on stop, after requests drained (reverse order of adding)."""
        self._shutdown.append(hook)
        return hook

    # -- ASGI ----------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The service is its own ASGI app (whole middleware stack), e.g. for httpx.ASGITransport."""
        await self.app(scope, receive, send)

    async def _route(self, scope: Scope, receive: Receive, send: Send) -> None:
        # With "app" in the scope Starlette raises HTTPException for 404/405 instead of
        # answering plain text, so the error middleware gives them our JSON shape.
        scope["app"] = self
        ops = self._ops.get(scope.get("path", ""))
        if ops is not None and scope["type"] == "http":
            _match, child = ops.matches(scope)
            scope.update(child, route=ops)
            await ops.handle(scope, receive, send)
            return
        await self.router(scope, receive, send)

    # -- state -----------------------------------------------------------------------------

    @property
    def draining(self) -> bool:
        """True once a stop began: new requests are refused."""
        return self.gate.draining

    @property
    def port(self) -> int | None:
        """The port actually bound (after start)."""
        return self.instance.port if self.instance else None

    @property
    def url(self) -> str:
        """``http://address:port`` of this instance (after start)."""
        if self.instance is None:
            raise RuntimeError(f"service {self.name!r} is not started")
        return self.instance.url

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self, *, port: int | None = None) -> None:
        """Start everything and register; returns when the instance is ready.

        ``port`` overrides ``settings.port`` (0 = a free port; tests use it).
        """
        if self._running:
            raise RuntimeError(f"service {self.name!r} is already started")
        s = self.settings
        configure_logging(s.log_level, service=self.name, instance=s.instance_id)
        bind_labels(self.name, s.instance_id)
        self._running = True
        self._force.clear()
        self.gate.open()
        try:
            await self._open_dependencies()
            for hook in self._startup:
                await hook(self)
            sock = bind_socket(s.host, s.port if port is None else port)
            port = sock.getsockname()[1]
            self.started_at = time.time()
            self.instance = Instance(
                service=self.name,
                instance_id=s.instance_id,
                address=s.address,
                port=port,
                version=self.version,
                metadata=dict(s.metadata),
                started_at=self.started_at,
            )
            self._server = create_server(s.http_server, self.app, sock, graceful_timeout=s.drain_timeout)
            self._serve_task = asyncio.create_task(self._server.serve(), name=f"meshkit-http-{self.name}")
            await self._wait_serving(s.host, port)
            await self._register()
        except BaseException:
            await self._teardown(deregister=False)
            raise
        logger.info(
            "%s %s serving at %s", self.name, self.version, self.instance.url,
            extra={"port": port, "http_server": s.http_server},
        )

    async def _open_dependencies(self) -> None:
        from meshkit.basis.client import ServiceClient
        from meshkit.basis.registry import open_registry
        from meshkit.basis.registry.view import RegistryView

        s = self.settings
        self.registry = await open_registry(s.registry)
        self.view = RegistryView(self.registry, default_ttl=s.registry_ttl)
        await self.view.start()
        self.client = ServiceClient(self.view, caller=self.name, timeout=s.call_timeout)
        if "registry" not in self.checks.names():
            self.checks.add("registry", self._check_registered)

    async def _register(self) -> None:
        from meshkit.basis.registry.registration import Registration

        s = self.settings
        self.registration = Registration(self.registry, self.instance, ttl=s.registry_ttl, interval=s.heartbeat_interval)
        await self.registration.start()
        self.registered = True

    async def _check_registered(self) -> None:
        # One round trip to the registry: proves it is reachable and we are in it.
        live = await self.registry.list(self.name)
        if not any(i.instance_id == self.instance.instance_id for i in live):
            raise RuntimeError("this instance is missing from the registry (heartbeats failing?)")

    async def _wait_serving(self, host: str, port: int, timeout: float = 10.0) -> None:
        """Return once the server answers ``/livez`` on its socket (or fail if it died)."""
        probe_host = "127.0.0.1" if host in ("0.0.0.0", "") else ("::1" if host == "::" else host)
        deadline = time.monotonic() + timeout
        request = f"GET /livez HTTP/1.1\r\nhost: {probe_host}\r\nconnection: close\r\n\r\n".encode()
        while True:
            if self._serve_task.done():
                self._serve_task.result()  # raises what the server died of
                raise RuntimeError("the HTTP server stopped during start-up")
            try:
                reader, writer = await asyncio.wait_for(asyncio.open_connection(probe_host, port), 1.0)
                try:
                    writer.write(request)
                    line = await asyncio.wait_for(reader.readline(), 1.0)
                finally:
                    writer.close()
                if line.startswith(b"HTTP/1.1 200"):
                    return
            except (OSError, TimeoutError):
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"the HTTP server did not answer on port {port} within {timeout:g}s")
            await asyncio.sleep(0.01)

    async def stop(self) -> None:
        """Graceful stop: deregister, refuse new work, drain, stop, clean up. Idempotent."""
        if not self._running:
            return
        await self._teardown(deregister=True)

    def force(self) -> None:
        """Cut the drain short (a second stop signal)."""
        self._force.set()

    async def _teardown(self, *, deregister: bool) -> None:
        s = self.settings
        # 1. Deregister first: callers' views drop us before we refuse anything.
        if self.registration is not None:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(2.0):
                    await self.registration.stop(deregister=deregister or self.registered)
        self.registered = False
        # 2. Refuse new work; 3. let in-flight requests finish.
        self.gate.close()
        if self._serve_task is not None:
            in_flight = self.gate.in_flight
            if in_flight:
                logger.info("draining %d request(s) for up to %.1fs", in_flight, s.drain_timeout)
            idle = asyncio.ensure_future(self.gate.wait_idle(s.drain_timeout))
            forced = asyncio.ensure_future(self._force.wait())
            await asyncio.wait({idle, forced}, return_when=asyncio.FIRST_COMPLETED)
            forced.cancel()
            if not idle.done() or not idle.result():
                idle.cancel()
                logger.warning("%d request(s) still in flight after the drain; cutting them", self.gate.in_flight)
            # 4. Stop the server (it has nothing left to wait for unless the drain timed out).
            await stop_server(self._server, self._serve_task, timeout=2.0)
        # 5. Shutdown hooks, newest first (they undo start-up hooks).
        for hook in reversed(self._shutdown):
            try:
                await hook(self)
            except Exception:
                logger.exception("shutdown hook %s failed", getattr(hook, "__name__", hook))
        # 6. Close what start() opened.
        for name, closer in (("client", self.client), ("view", self.view), ("registry", self.registry)):
            if closer is None:
                continue
            try:
                await closer.close()
            except Exception:
                logger.exception("closing the %s failed", name)
        self.client = self.view = self.registry = self.registration = None
        self._server = self._serve_task = None
        self._running = False
        logger.info("%s stopped", self.name)
        flush_logs()


def run(service: Service) -> None:
    """Run ``service`` until SIGTERM or SIGINT, then stop it gracefully (blocking).

    Returns normally (exit status 0) after a graceful stop; a second signal cuts
    the drain short. A failure to start is logged and exits with status 1.
    """
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency off Windows
        code = asyncio.run(_main(service))
    else:
        code = uvloop.run(_main(service))
    if code:
        raise SystemExit(code)


async def _main(service: Service) -> int:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()

    def on_signal(signum: int) -> None:
        if stop.is_set():
            logger.warning("second %s: cutting the drain short", signal.Signals(signum).name)
            service.force()
        else:
            logger.info("%s: stopping gracefully", signal.Signals(signum).name)
            stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal, sig)
    try:
        await service.start()
    except Exception:
        logger.exception("%s failed to start", service.name)
        return 1
    waiter = asyncio.ensure_future(stop.wait())
    await asyncio.wait({waiter, service._serve_task}, return_when=asyncio.FIRST_COMPLETED)
    died = not stop.is_set()
    waiter.cancel()
    if died:
        logger.error("the HTTP server stopped unexpectedly; stopping the service")
    await service.stop()
    return 1 if died else 0
