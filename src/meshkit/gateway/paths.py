"""The request path as routed and forwarded: one spelling per path, nothing that escapes a route.

Routes match the path as received, and upstreams decode it before they route. Two
spellings of one path could therefore take different routes at the gateway and
the same one upstream: ``/api/orders/%61dmin`` would miss the guarded
``/api/orders/admin/`` route, match the open ``/api/orders/`` one, and reach the
upstream's ``/orders/admin``. So, before routing (RFC 3986 §6.2.2):

- percent-encoded unreserved characters (letters, digits, ``-._~``) are decoded,
  other escapes upper-cased: ``/%61dmin/%2d`` is ``/admin/-``;
- runs of ``/`` are one ``/`` (nginx, Spring and others merge them before routing:
  ``/api/orders//admin`` is their ``/api/orders/admin``);
- an encoded ``/`` or ``\\`` (``%2F``, ``%5C``) is refused: upstreams split on it
  after decoding, the gateway's routes could not;
- ``.``/``..`` segments (also encoded, or as ``..;x``, which Java servers read as
  ``..``) are refused: they would walk out of a rewritten prefix.

Paths without ``%``, ``//``, ``/.`` or ``\\`` (nearly all) are not looked at twice.
"""

from __future__ import annotations

import re

from meshkit.basis.errors import BadRequest

_ESCAPE = re.compile(r"%([0-9A-Fa-f]{2})")
_SLASHES = re.compile(r"/{2,}")
_UNRESERVED = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")


def _unescape(m: re.Match[str]) -> str:
    byte = int(m.group(1), 16)
    if byte in (0x2F, 0x5C):
        raise BadRequest("an encoded '/' or '\\' (%2F, %5C) in the path is not allowed: upstreams would read "
                         "it as a separator the gateway's routes did not see", reason="bad_path")
    return chr(byte) if byte in _UNRESERVED else "%" + m.group(1).upper()


def clean_path(path: str) -> str:
    """``path`` in its one spelling; :class:`BadRequest` (``bad_path``) for one that must not be routed."""
    if "%" in path:
        path = _ESCAPE.sub(_unescape, path)
    if "//" in path:
        path = _SLASHES.sub("/", path)
    if "/." in path or "\\" in path:
        if "\\" in path or any(seg.partition(";")[0] in (".", "..") for seg in path.split("/")):
            raise BadRequest("path segments '.' and '..' are not allowed", reason="bad_path")
    return path
