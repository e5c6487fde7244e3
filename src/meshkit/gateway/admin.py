"""The admin API, on its own port (loopback by default).

- ``GET /admin/routes``: the loaded table (source, time, each route);
- ``GET /admin/upstreams``: per upstream, each instance with breaker state,
  ejection, in-flight count and latency, plus the retry budget;
- ``POST /admin/reload``: re-read the routes file (400 with file:line on a bad one);
- ``POST /admin/cache/purge[?route=NAME][&prefix=/path]``: drop cached answers;
- ``GET /metrics``, ``/livez``, ``/readyz``.

Browsers are kept out: a request with an ``Origin`` header (a web page's fetch or
form) is refused, and so, on a loopback address, is one whose ``Host`` is a name
other than ``localhost`` (DNS rebinding: a page of ``evil.example`` whose name
now points to 127.0.0.1). Tools (curl, Prometheus, ``meshkit``) send neither.
"""

from __future__ import annotations

import ipaddress
from typing import TYPE_CHECKING
from urllib.parse import parse_qs

import orjson

from meshkit.basis.errors import BadRequest, ConfigError, Forbidden, MeshkitError, MethodNotAllowed, NotFound
from meshkit.gateway.messages import Request, Response, error_response
from meshkit.gateway.router import host_of

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
            self._from_a_tool(req)
            return await self._route(req)
        except MeshkitError as exc:
            return error_response(exc)

    def _from_a_tool(self, req: Request) -> None:
        if req.header(b"origin") is not None:
            raise Forbidden("the admin API does not answer requests made by web pages (an Origin header)",
                            reason="browser_refused")
        if self.gateway.settings.admin_host in _LOOPBACK:
            host = host_of(req.header(b"host"))
            if host and host != "localhost" and not _is_ip(host):
                raise Forbidden(f"the admin API on a loopback address answers Host 'localhost' or an IP address, "
                                f"not {host[:64]!r} (a web page's name pointing to 127.0.0.1)", reason="bad_host")

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


_LOOPBACK = frozenset({"127.0.0.1", "::1", "localhost"})


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


def _only(method: str, allowed: str) -> None:
    if method != allowed:
        raise MethodNotAllowed(f"use {allowed}", headers={"Allow": allowed})
