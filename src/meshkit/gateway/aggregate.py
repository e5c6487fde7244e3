"""Aggregation: one request fans out to several backends; their JSON is merged into named parts.

Each part is called concurrently with its own timeout (within the route's
deadline). A part that fails (no answer, timeout, non-2xx, not JSON) is left
out; the answer lists missing parts in the ``x-missing-parts`` header and in a
``_missing`` field, so a client gets what could be had instead of nothing.
Only when every part fails is the answer an error (502).
"""

from __future__ import annotations

import asyncio
import time

import orjson

from meshkit.basis.errors import BadGateway, MeshkitError
from meshkit.gateway.forward import Forwarder
from meshkit.gateway.messages import Response
from meshkit.gateway.table import PartRuntime, RouteRuntime

#: Request headers a part never gets: each would make a part answer something other than its
#: whole JSON (304 to a revalidating browser, 206, a gzip-coded body) and be left out as failed.
_NOT_FOR_PARTS = frozenset({b"accept-encoding", b"if-none-match", b"if-modified-since", b"if-match",
                            b"if-unmodified-since", b"if-range", b"range"})


class _Params(dict):
    def __missing__(self, key: str) -> str:
        return ""


async def _part(forwarder: Forwarder, route: RouteRuntime, part: PartRuntime, path: str,
                headers: list[tuple[bytes, bytes]], deadline: float) -> object:
    part_deadline = min(deadline, time.monotonic() + part.timeout)
    out = await forwarder.call(route, part.pool, None, "GET", path, headers, b"", part_deadline)
    r = out.response
    if not 200 <= r.status < 300:
        raise BadGateway(f"part answered {r.status}", reason="part_failed")
    try:
        return orjson.loads(r.body) if r.body else None
    except orjson.JSONDecodeError as exc:
        raise BadGateway("part did not answer JSON", reason="part_failed") from exc


async def aggregate(forwarder: Forwarder, route: RouteRuntime, method: str, params: dict[str, str],
                    headers: list[tuple[bytes, bytes]], deadline: float) -> Response:
    """Call every part of ``route`` and merge the answers."""
    if method not in ("GET", "HEAD"):
        raise MeshkitError("an aggregate route answers GET and HEAD only", reason="method_not_allowed", status=405,
                           headers={"Allow": "GET, HEAD"})
    fmt = _Params(params)
    headers = [(k, v) for k, v in headers if k not in _NOT_FOR_PARTS]
    # Each part gets its own header list: the forwarder appends the deadline to it.
    tasks = [_part(forwarder, route, p, p.path.format_map(fmt), list(headers), deadline) for p in route.parts]
    results = await asyncio.gather(*tasks, return_exceptions=True)
    merged: dict[str, object] = {}
    missing: list[str] = []
    problems: dict[str, str] = {}
    for part, result in zip(route.parts, results, strict=True):
        if isinstance(result, BaseException):
            if not isinstance(result, Exception):
                raise result
            missing.append(part.name)
            problems[part.name] = result.message if isinstance(result, MeshkitError) else type(result).__name__
        else:
            merged[part.name] = result
    if not merged:
        raise BadGateway("every part of this aggregate failed", reason="aggregate_failed", details=problems)
    headers_out = [(b"content-type", b"application/json")]
    if missing:
        merged["_missing"] = missing
        headers_out.append((b"x-missing-parts", ",".join(missing).encode()))
    return Response(200, headers_out, orjson.dumps(merged))
