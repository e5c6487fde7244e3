"""The compiled route table: routes file → router entries with everything precomputed.

A :class:`RouteTable` is immutable once built; a reload builds a new one and
the gateway swaps it in one assignment, so a request sees either the old table
or the new one, never a mix. Pools (and their breaker state) are shared
between tables through :class:`~meshkit.gateway.upstream.Pools`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import orjson

from meshkit.basis.client.retry import Backoff
from meshkit.gateway.config import Route, RoutesFile
from meshkit.gateway.guard import Guard
from meshkit.gateway.router import Entry, Router, compile_entry, rewrite_prefix
from meshkit.gateway.upstream import Pool, Pools

_IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})


@dataclass(slots=True)
class PartRuntime:
    """One backend of an aggregate route."""

    name: str
    pool: Pool
    path: str
    timeout: float


class RouteRuntime:
    """One route, ready for the hot path: no config parsing per request."""

    def __init__(self, cfg: Route, entry: Entry, pools: Pools, guard: Guard | None) -> None:
        self.cfg = cfg
        self.name = cfg.name
        self.entry = entry
        up = cfg.upstream
        self.pool: Pool | None = None
        self.upstream_name = ""
        self.split = False
        self.policy = "p2c"
        self.url_base = ""
        if up is not None:
            self.pool = pools.service(up.service) if up.service else pools.static(up.url)  # type: ignore[arg-type]
            self.upstream_name = self.pool.name
            self.policy = up.balancer
            self.split = up.version is not None or up.canary is not None
            self.url_base = ""
            if up.url:
                tail = up.url.split("://", 1)[1]
                self.url_base = "/" + tail.split("/", 1)[1] if "/" in tail else ""
                self.url_base = self.url_base.rstrip("/")
        self.parts: list[PartRuntime] = []
        if cfg.aggregate is not None:
            for name, part in cfg.aggregate.parts.items():
                pool = pools.service(part.service) if part.service else pools.static(part.url)  # type: ignore[arg-type]
                self.parts.append(PartRuntime(name, pool, part.path, part.timeout))
        rw = cfg.rewrite
        #: What the route sends to, as configured: part of its response cache keys.
        self.upstream_tag = repr((up, rw))
        self.rewrite_prefix = rw.prefix if rw else None
        self.rewrite_path = rw.path if rw else None
        self.plain_path = rw is None and not (self.pool is not None and self.pool.static and self.url_base)
        self.timeout = cfg.timeout
        self.attempts = cfg.retry.attempts + 1
        self.backoff = Backoff(base=cfg.retry.backoff, cap=cfg.retry.backoff_max)
        self.retry_status = frozenset(cfg.retry.on_status)
        self.auth = cfg.auth != "none"
        self.auth_required = cfg.auth == "required"
        self.roles = tuple(cfg.roles)
        self.permissions = tuple(cfg.permissions)
        rl = cfg.rate_limit
        self.rate = (rl.rate, rl.burst, rl.key) if rl else None
        c = cfg.cache
        self.cache = c
        self.vary = tuple(v.lower().encode() for v in c.vary) if c else ()
        self.guard = guard or Guard(cfg.name, cfg.limits.max_concurrency, cfg.limits.queue_timeout,
                                    cfg.limits.shed_latency)
        self.max_body = cfg.limits.max_body_bytes
        self.fault = cfg.fault
        self.stream = cfg.stream
        self.fallback = None
        if cfg.fallback is not None:
            fb = cfg.fallback
            if isinstance(fb.body, str):
                body, ctype = fb.body.encode(), fb.content_type or "text/plain; charset=utf-8"
            else:
                body, ctype = orjson.dumps(fb.body), fb.content_type or "application/json"
            self.fallback = (fb.status, [(b"content-type", ctype.encode())], body)
        self.cors = cfg.cors
        if cfg.cors is not None:
            co = cfg.cors
            self.cors_any = "*" in co.allow_origins
            #: Whether the CORS headers depend on the Origin (not a plain "*" for everyone).
            self.cors_varies = not self.cors_any or co.allow_credentials
            self.cors_origins = frozenset(o.encode() for o in co.allow_origins)
            common = []
            if co.allow_credentials:
                common.append((b"access-control-allow-credentials", b"true"))
            if co.expose_headers:
                common.append((b"access-control-expose-headers", ", ".join(co.expose_headers).encode()))
            self.cors_common = common
            self.cors_preflight = [
                (b"access-control-allow-methods", ", ".join(co.allow_methods).encode()),
                (b"access-control-allow-headers", ", ".join(co.allow_headers).encode()),
                (b"access-control-max-age", str(co.max_age).encode()),
            ]

    def idempotent(self, method: str) -> bool:
        return method in _IDEMPOTENT

    def cors_headers(self, origin: bytes) -> list[tuple[bytes, bytes]] | None:
        """Headers allowing ``origin``, or None when it is not allowed."""
        co = self.cors
        if co is None:
            return None
        if origin in self.cors_origins:
            return [(b"access-control-allow-origin", origin), (b"vary", b"origin"), *self.cors_common]
        if self.cors_any:  # never with credentials (refused at load)
            return [(b"access-control-allow-origin", b"*"), (b"vary", b"origin"), *self.cors_common]
        return None

    def upstream_path(self, path: str, params: dict[str, str]) -> str:
        """The path to send upstream, after prefix or template rewriting."""
        if self.plain_path:
            return path
        if self.rewrite_prefix is not None:
            path = rewrite_prefix(path, self.entry.literal_prefix, self.rewrite_prefix)
        elif self.rewrite_path is not None:
            path = self.rewrite_path.format_map(_Params(params))
        if self.pool is not None and self.pool.static and self.url_base:
            path = self.url_base + path
        return path

    def snapshot(self) -> dict:
        m = self.cfg.match
        out = {"name": self.name, "match": m.model_dump(exclude_none=True), "auth": self.cfg.auth,
               "in_flight": self.guard.in_flight}
        if self.pool is not None:
            out["upstream"] = self.upstream_name
        if self.parts:
            out["aggregate"] = [p.name for p in self.parts]
        return out


class _Params(dict):
    def __missing__(self, key: str) -> str:
        return ""


class RouteTable:
    """A router plus the routes it leads to, from one version of the routes file."""

    def __init__(self, routes: list[RouteRuntime], source: str) -> None:
        self.routes = routes
        self.router = Router([r.entry for r in routes])
        self.source = source
        self.loaded_at = time.time()

    def snapshot(self) -> dict:
        return {"source": self.source, "loaded_at": self.loaded_at, "routes": [r.snapshot() for r in self.routes]}


def compile_table(spec: RoutesFile, pools: Pools, source: str, previous: RouteTable | None = None) -> RouteTable:
    """Build a table; a route whose name and limits did not change keeps its guard (in-flight counts)."""
    old = {r.name: r for r in previous.routes} if previous else {}
    routes: list[RouteRuntime] = []
    for order, cfg in enumerate(spec.routes):
        methods = list(cfg.match.methods) if cfg.match.methods else None
        if methods is not None and cfg.cors is not None and "OPTIONS" not in methods:
            methods.append("OPTIONS")  # CORS preflight must reach the route
        entry = compile_entry(None, order, path=cfg.match.path, prefix=cfg.match.prefix, methods=methods,
                              host=cfg.match.host)
        prev = old.get(cfg.name)
        guard = prev.guard if prev is not None and prev.cfg.limits == cfg.limits else None
        rt = RouteRuntime(cfg, entry, pools, guard)
        entry.target = rt
        routes.append(rt)
    used = {r.pool.name for r in routes if r.pool is not None} | {p.pool.name for r in routes for p in r.parts}
    pools.retain(used)
    return RouteTable(routes, source)
