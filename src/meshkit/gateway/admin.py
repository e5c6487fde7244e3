"""The admin API, on its own port (loopback by default).

- ``GET /admin/routes``: the loaded table (source, time, each route);
- ``GET /admin/upstreams``: per upstream, each instance with breaker state,
  ejection, in-flight count and latency, plus the retry budget;
- ``POST /admin/reload``: re-read the routes file (400 with file:line on a bad one);
- ``POST /admin/cache/purge[?route=NAME][&prefix=/path]``: drop cached answers;
- ``GET /metrics``, ``/livez``, ``/readyz``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import parse_qs

import orjson

from meshkit.basis.errors import BadRequest, ConfigError, MeshkitError, MethodNotAllowed, NotFound
from meshkit.gateway.messages import Request, Response, error_response

if TYPE_CHECKING:
    from meshkit.gateway.app import Gateway

_JSON = [(b"content-type", b"application/json")]


def json_answer(obj: object, status: int = 200) -> Response:
    return Response(status, list(_JSON), orjson.dumps(obj))


class Admin:
    """Handler of the admin port."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway

    async def handle(self, req: Request) -> Response:
        try:
            return await self._route(req)
        except MeshkitError as exc:
            return error_response(exc)

    async def _route(self, req: Request) -> Response:
        gw = self.gateway
        path, method = req.path, req.method
        local = gw.local_endpoints.get(path)
        if local is not None:
            return await local(req)
        if path == "/admin/routes":
            _only(method, "GET")
            return json_answer(gw.proxy.table.snapshot())
        if path == "/admin/upstreams":
            _only(method, "GET")
            return json_answer({name: pool.snapshot() for name, pool in sorted(gw.pools.pools.items())})
        if path == "/admin/reload":
            _only(method, "POST")
            try:
                table = gw.reload()
            except ConfigError as exc:
                raise BadRequest(exc.message, reason="invalid_routes", details=exc.details) from None
            return json_answer({"reloaded": True, "routes": len(table.routes), "source": table.source})
        if path == "/admin/cache/purge":
            _only(method, "POST")
            q = parse_qs(req.query.decode("latin-1"))
            n = gw.cache.purge(route=q.get("route", [None])[0], prefix=q.get("prefix", [None])[0])
            return json_answer({"purged": n})
        raise NotFound(f"no admin endpoint {path}; try /admin/routes, /admin/upstreams, /admin/reload, "
                       "/admin/cache/purge, /metrics")


def _only(method: str, allowed: str) -> None:
    if method != allowed:
        raise MethodNotAllowed(f"use {allowed}", headers={"Allow": allowed})
