"""The gateway as a whole: wires settings, registry, routes, security and the two servers.

>>> gw = Gateway(settings)
>>> await gw.start()          # registry view synced, routes loaded, listening
>>> gw.port, gw.admin_port
>>> gw.reload()               # re-read the routes file (also polled, and POST /admin/reload)
>>> await gw.stop()           # deregister, stop accepting, drain, close
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import time
from pathlib import Path

from meshkit.basis.errors import ConfigError, Unavailable
from meshkit.basis.http import HttpTransport
from meshkit.basis.instance import Instance
from meshkit.basis.seal import parse_key
from meshkit.gateway.accesslog import AccessLog
from meshkit.gateway.admin import Admin, json_answer
from meshkit.gateway.cache import ResponseCache
from meshkit.gateway.forward import Forwarder
from meshkit.gateway.loader import default_routes_path, load_routes
from meshkit.gateway.messages import Limits, Request, Response, error_response
from meshkit.gateway.metrics import GatewayMetrics
from meshkit.gateway.proxy import Proxy
from meshkit.gateway.server import Server, serve
from meshkit.gateway.settings import GatewaySettings
from meshkit.gateway.table import RouteTable, compile_table
from meshkit.gateway.upstream import Pools, PoolSettings

log = logging.getLogger("meshkit.gateway")

#: Seconds the registry gets to answer a readiness probe.
READY_TIMEOUT = 1.0
#: Seconds start() waits for the replay of stored token revocations before registering.
REPLAY_WAIT = 10.0


def tls_context(cert: Path, key: Path) -> ssl.SSLContext:
    """A server-side TLS context for ``cert``/``key`` (PEM), HTTP/1.1 only."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        ctx.load_cert_chain(str(cert), str(key))
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"cannot load TLS certificate {cert} / key {key}: {exc}; "
                          "check GATEWAY_TLS_CERT and GATEWAY_TLS_KEY") from exc
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx


class Gateway:
    """One gateway instance. Pass ``view`` to share a registry view (tests); else one is opened."""

    def __init__(self, settings: GatewaySettings, *, view=None, registry=None, authenticator=None,
                 limiter=None, register: bool = True) -> None:
        self.settings = settings
        self.view = view
        self.registry = registry
        self.authenticator = authenticator
        self.limiter = limiter
        self.register = register
        self.routes_path = Path(settings.routes_file) if settings.routes_file else default_routes_path()
        self.metrics = GatewayMetrics()
        self.cache = ResponseCache(settings.cache_max_bytes)
        self.pools: Pools | None = None
        self.proxy: Proxy | None = None
        self.server: Server | None = None
        self.admin_server: Server | None = None
        self.transport: HttpTransport | None = None
        self.registration = None
        self.access_log: AccessLog | None = None
        self.reload_error: str | None = None
        self.reloads = 0
        self._owned: list = []
        self._watch: asyncio.Task | None = None
        self._revocations: asyncio.Task | None = None
        self._stamp: tuple[int, int] | None = None
        self._changing: tuple[int, int] | None = None  # a new stamp seen once, waiting to settle
        self.draining = False
        self.local_endpoints = {"/livez": self._livez, "/readyz": self._readyz, "/metrics": self._metrics}

    @property
    def port(self) -> int:
        assert self.server is not None
        return self.server.port

    @property
    def admin_port(self) -> int:
        assert self.admin_server is not None
        return self.admin_server.port

    async def start(self) -> Gateway:
        """Connect, load routes, listen; raises :class:`ConfigError` on bad settings or routes."""
        s = self.settings
        if s.api_keys_service and s.api_keys_file:
            raise ConfigError(
                f"API keys come from one place: GATEWAY_API_KEYS_SERVICE={s.api_keys_service!r} (keys owned by "
                f"that service, e.g. the SSO) or GATEWAY_API_KEYS_FILE={s.api_keys_file!r} (a file of key hashes), "
                "not both; unset one (under `meshkit up`, GATEWAY_API_KEYS_SERVICE= turns the SSO's keys off)")
        spec = load_routes(self.routes_path)  # fail before opening anything
        self._stamp = self._file_stamp()
        if self.view is None:
            from meshkit.basis.registry import open_registry
            from meshkit.basis.registry.view import RegistryView

            if self.registry is None:
                self.registry = await open_registry(s.registry)
                self._owned.append(self.registry)
            self.view = RegistryView(self.registry)
            await self.view.start()
            self._owned.insert(0, self.view)
        self.pools = Pools(PoolSettings(breaker_failure_ratio=s.breaker_failure_ratio,
                                        breaker_min_calls=s.breaker_min_calls, breaker_open_for=s.breaker_open_for,
                                        eject_after=s.eject_after, eject_for=s.eject_for,
                                        retry_ratio=s.retry_budget_ratio), self.view.instances)
        self.view.subscribe(self.pools.on_change)
        table = compile_table(spec, self.pools, str(self.routes_path))
        self.transport = HttpTransport(max_connections_per_host=s.upstream_max_connections)
        if self.authenticator is None and (s.jwks_url or s.api_keys_file or s.api_keys_service):
            from meshkit.gateway.security import Authenticator

            api_keys = None
            if s.api_keys_service:
                # Keys live at the SSO: asked through discovery, cached for a TTL, an outage is 503.
                from meshkit.gateway.ssokeys import SsoKeySource

                api_keys = SsoKeySource(self.view, service=s.api_keys_service, caller=s.name,
                                        ttl=s.api_keys_cache_ttl, timeout=s.api_keys_timeout)
                self._owned.append(api_keys)  # closes its ServiceClient on stop
            self.authenticator = Authenticator(jwks_url=s.jwks_url, issuer=s.issuer, audience=s.audience,
                                               leeway=s.leeway, api_keys_file=s.api_keys_file or None,
                                               api_keys=api_keys, failure_rate=s.auth_failure_rate,
                                               failure_burst=s.auth_failure_burst)
            await self.authenticator.start()
            self._owned.append(self.authenticator)
            if s.jwks_url:
                # Tokens the SSO revokes (logout, reuse, disabled user) are refused within the bus latency.
                self._revocations = asyncio.get_running_loop().create_task(self._follow_revocations())
        if self.limiter is None:
            # Always (a backend connects on its first hit): a reload may add a rate-limited route,
            # which without a limiter answered 500 to every request.
            from meshkit.gateway.security import open_rate_limiter

            self.limiter = open_rate_limiter(s.rate_limit_url)
            self._owned.append(self.limiter)
        if s.access_log:
            self.access_log = AccessLog(s.name, s.instance_id)
            self.access_log.start()
        local = dict(self.local_endpoints)
        if not s.public_metrics:
            local.pop("/metrics")
        self.proxy = Proxy(table, Forwarder(self.transport, self.metrics), self.metrics, self.cache,
                           authenticator=self.authenticator, limiter=self.limiter, access_log=self.access_log,
                           trust_forwarded=s.trust_forwarded, local=local,
                           identity_key=parse_key(s.identity_key.get_secret_value() if s.identity_key else None))
        ctx = tls_context(s.tls_cert, s.tls_key) if s.tls_cert and s.tls_key else None
        limits = Limits(max_header_bytes=s.max_header_bytes, max_body_bytes=s.max_body_bytes,
                        keepalive_timeout=s.keepalive_timeout, max_connections=s.max_connections)
        on_error = lambda exc: log.error("unhandled error in a handler", exc_info=exc)  # noqa: E731
        self.server = await serve(self.proxy.handle, s.host, s.port, limits=limits, ssl_context=ctx,
                                  on_error=on_error, reuse_port=s.workers != 1)
        if s.worker_index == 0:  # extra workers serve the public port only
            self.admin_server = await serve(Admin(self).handle, s.admin_host, s.admin_port, on_error=on_error)
        if s.reload_interval > 0:
            self._watch = asyncio.get_running_loop().create_task(self._watch_file())
        if self._revocations is not None:
            # Found through discovery only once the revocations made while it was down apply;
            # /readyz says "revocations" until then.
            done, _ = await asyncio.wait({self._revocations}, timeout=REPLAY_WAIT)
            if not done:
                log.warning("token revocations not replayed within %g s (is NATS up?); serving anyway, "
                            "/readyz answers 503 until they are", REPLAY_WAIT)
        if self.register and s.worker_index == 0 and self.registry is not None:
            await self._register()
        log.info("gateway %slistening on %s://%s:%d (%s), %d routes from %s",
                 f"worker {s.worker_index} " if s.worker_index else "", "https" if ctx else "http", s.host,
                 self.port, f"admin on {s.admin_host}:{self.admin_port}" if self.admin_server else "no admin",
                 len(table.routes), self.routes_path)
        return self

    async def _follow_revocations(self) -> None:
        """Apply the SSO's revocations (JetStream stream ``SSO``) from the registry's NATS; retries until it answers.

        The task ends once the stored revocations are replayed (new ones keep arriving):
        ``await gateway._revocations`` waits for that. Started before the listener, it
        usually ends before the first request; a request in between is checked
        without the revocations the gateway missed while it was down.
        """
        url = self.settings.registry.split("?", 1)[0]
        if not url.startswith(("nats://", "tls://")):
            log.warning("registry %s is not on NATS: token revocations are not followed (tokens stay valid "
                        "until they expire)", url)
            return
        delay = 0.5
        while True:
            try:
                await self.authenticator.follow_revocations(url)
                return
            except Exception as exc:
                log.error("not following token revocations on %s yet (retrying in %g s): %s", url, delay,
                          getattr(exc, "message", None) or exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)

    async def _register(self) -> None:
        from meshkit.basis.registry.registration import Registration

        s = self.settings
        inst = Instance(service=s.name, instance_id=s.instance_id, address=s.address, port=self.port,
                        version=s.version, metadata={**s.metadata, "admin_port": self.admin_port,
                                                     "scheme": "https" if s.tls_cert else "http"})
        self.registration = Registration(self.registry, inst, ttl=s.registry_ttl, interval=s.heartbeat_interval)
        await self.registration.start()

    # --- reload -------------------------------------------------------------
    def reload(self) -> RouteTable:
        """Re-read the routes file and swap the table in one assignment; a bad file keeps the old table."""
        assert self.proxy is not None and self.pools is not None
        try:
            spec = load_routes(self.routes_path)
        except ConfigError as exc:
            self.reload_error = exc.message
            log.error("routes not reloaded, keeping the previous ones: %s", exc.message)
            raise
        table = compile_table(spec, self.pools, str(self.routes_path), previous=self.proxy.table)
        self.proxy.table = table  # the atomic swap: requests read self.table once
        self.reload_error = None
        self.reloads += 1
        log.info("routes reloaded from %s: %d routes", self.routes_path, len(table.routes))
        return table

    def _file_stamp(self) -> tuple[int, int] | None:
        try:
            st = self.routes_path.stat()
        except OSError:
            return None
        return st.st_mtime_ns, st.st_size

    async def _watch_file(self) -> None:
        while True:
            await asyncio.sleep(self.settings.reload_interval)
            self._poll_file()

    def _poll_file(self) -> None:
        """One look at the routes file: reload once a change has stayed put for a whole interval.

        A file caught while being written may be valid YAML that lacks the routes still to come
        (a truncated list): loaded at once, those routes would answer 404 until the next look.
        """
        stamp = self._file_stamp()
        if stamp is None or stamp == self._stamp:
            self._changing = None
            return
        if stamp != self._changing:  # changed since the last look: wait for it to settle
            self._changing = stamp
            return
        self._stamp, self._changing = stamp, None
        with contextlib.suppress(ConfigError):
            self.reload()

    # --- local endpoints ----------------------------------------------------
    async def _livez(self, req: Request) -> Response:
        return json_answer({"status": "ok"})

    async def _readyz(self, req: Request) -> Response:
        """200 when routes are loaded and the registry answers; else 503 naming what failed."""
        if self.draining:
            return error_response(Unavailable("the gateway is shutting down", reason="shutting_down"))
        routes: dict = {"ok": self.proxy is not None}
        if self.proxy is None:
            routes["error"] = "routes not loaded yet (starting)"
        if self.reload_error:  # the previous table still serves: say so, but stay ready
            routes["last_reload_error"] = self.reload_error
        checks = {"routes": routes}
        if self._revocations is not None and not self._revocations.done():
            checks["revocations"] = {"ok": False, "error": "replaying the SSO's stored token revocations "
                                     "(stream SSO on NATS); a token revoked while this gateway was down "
                                     "would still pass"}
        if self.registry is not None:
            checks["registry"] = await self._check_registry()
        failed = [name for name, check in checks.items() if not check["ok"]]
        if failed:
            return error_response(Unavailable(f"not ready: {', '.join(failed)} failed; see details.checks",
                                              reason="not_ready", details={"failed": failed, "checks": checks}))
        return json_answer({"status": "ready", "checks": checks})

    async def _check_registry(self) -> dict:
        # One round trip: without the registry the gateway routes on what it last saw,
        # new instances stay unknown and its own heartbeats fail, so it is not ready.
        start = time.perf_counter()
        error = None
        try:
            async with asyncio.timeout(READY_TIMEOUT):
                live = await self.registry.list(self.settings.name)
            if self.registration is not None and not any(i.instance_id == self.settings.instance_id for i in live):
                error = "this gateway is missing from the registry (heartbeats failing?)"
        except TimeoutError:
            error = f"the registry did not answer within {READY_TIMEOUT:g}s: is NATS up (MESHKIT_NATS_URL)?"
        except Exception as exc:
            error = f"{type(exc).__name__}: {getattr(exc, 'message', exc)}"[:300]
        out: dict = {"ok": error is None, "duration_ms": round((time.perf_counter() - start) * 1000.0, 3)}
        if error is not None:
            out["error"] = error
        return out

    async def _metrics(self, req: Request) -> Response:
        m = self.metrics
        if self.proxy is not None:
            m.in_flight = {r.name: r.guard.in_flight for r in self.proxy.table.routes}
        m.gauges["gateway_cache_bytes"] = self.cache.bytes
        m.gauges["gateway_cache_entries"] = len(self.cache)
        m.gauges["gateway_route_reloads"] = self.reloads
        if self.server is not None:
            m.gauges["gateway_connections"] = len(self.server.connections)
        return Response(200, [(b"content-type", b"text/plain; version=0.0.4; charset=utf-8")], m.render())

    # --- stop ---------------------------------------------------------------
    async def stop(self, drain_timeout: float | None = None) -> None:
        """Deregister first (no new traffic is sent here), then drain and close everything."""
        self.draining = True
        if self.registration is not None:
            with contextlib.suppress(Exception):
                await self.registration.stop(deregister=True)
        if self._watch is not None:
            self._watch.cancel()
        if self._revocations is not None:
            self._revocations.cancel()
        timeout = self.settings.drain_timeout if drain_timeout is None else drain_timeout
        if self.server is not None:
            await self.server.stop(timeout)
        if self.admin_server is not None:
            await self.admin_server.stop(1.0)
        if self.access_log is not None:
            await self.access_log.stop()
        if self.transport is not None:
            await self.transport.close()
        for owned in self._owned:
            with contextlib.suppress(Exception):
                await owned.close()
