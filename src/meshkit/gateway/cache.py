"""Response cache: GET/HEAD answers kept for a route's TTL, bounded by bytes (LRU).

Policy (a shared cache, RFC 9111 in spirit):

- only GET and HEAD (HEAD is served from the GET entry); a request with
  ``Cache-Control: no-store`` is never looked up nor stored, ``no-cache`` is
  not looked up (but the fresh answer is stored);
- stored only for 200/203/204/300/301/308, never with ``Set-Cookie``, never
  when the upstream says ``private``, ``no-store`` or ``no-cache``, never for ``Vary: *``;
- lifetime: the upstream's ``s-maxage`` / ``max-age`` when given, else the route TTL;
- the key is route, path and query, the ``Host`` (passed upstream as
  ``x-forwarded-host``: an answer may be built from it), the values of the ``Vary``
  headers (the route's plus the upstream's) and, on authenticated routes, the caller as the
  upstream sees it (subject, kind, tenant, roles, permissions);
- an expired entry is kept ``stale_if_error`` seconds more, to answer (marked
  STALE) when the upstream fails, unless the upstream said ``must-revalidate``,
  ``proxy-revalidate`` or ``s-maxage`` (then never stale).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass

CACHEABLE_STATUS = frozenset({200, 203, 204, 300, 301, 308})
#: Headers not stored with an entry (hop-by-hop or per-answer).
_NOT_STORED = frozenset({b"connection", b"keep-alive", b"transfer-encoding", b"date", b"age",
                         b"x-cache", b"x-request-id", b"content-length"})
_OVERHEAD = 256  # rough bytes of bookkeeping per entry


def cache_control(value: bytes | None) -> dict[str, str]:
    """Directives of a ``Cache-Control`` header value, lower-cased (``{"max-age": "30", "public": ""}``)."""
    if not value:
        return {}
    out = {}
    for part in value.decode("latin-1").lower().split(","):
        k, _, v = part.strip().partition("=")
        if k:
            out[k] = v.strip().strip('"')
    return out


@dataclass(slots=True)
class Entry:
    """A stored answer."""

    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes
    stored_at: float
    expires: float
    stale_until: float
    size: int

    def age(self, now: float) -> int:
        return int(now - self.stored_at)


def request_bypass(headers: list[tuple[bytes, bytes]]) -> tuple[bool, bool]:
    """``(lookup, store)`` allowed for a request, from its ``Cache-Control``/``Pragma``."""
    for k, v in headers:
        if k == b"cache-control":
            cc = cache_control(v)
            if "no-store" in cc:
                return False, False
            if "no-cache" in cc or cc.get("max-age") == "0":
                return False, True
        elif k == b"pragma" and b"no-cache" in v.lower():
            return False, True
    return True, True


def may_serve_stale(headers: list[tuple[bytes, bytes]]) -> bool:
    """Whether an answer may be served stale when the upstream fails: not when it says
    ``must-revalidate``, ``proxy-revalidate`` or ``s-maxage`` (RFC 9111 §5.2.2.2, §5.2.2.8, §5.2.2.10)."""
    for k, v in headers:
        if k == b"cache-control":
            cc = cache_control(v)
            if "must-revalidate" in cc or "proxy-revalidate" in cc or "s-maxage" in cc:
                return False
    return True


def response_ttl(status: int, headers: list[tuple[bytes, bytes]], route_ttl: float,
                 authorized_request: bool) -> tuple[float, tuple[bytes, ...]] | None:
    """``(ttl, vary names)`` if this answer may be stored, else ``None``.

    ``authorized_request`` is a request that carried credentials on a route
    where the key does not include the user: store only what is marked ``public``.
    """
    if status not in CACHEABLE_STATUS:
        return None
    cc: dict[str, str] = {}
    vary: list[bytes] = []
    for k, v in headers:
        if k == b"set-cookie":
            return None
        if k == b"cache-control":
            cc.update(cache_control(v))
        elif k == b"vary":
            for name in v.lower().split(b","):
                name = name.strip()
                if name == b"*":
                    return None
                if name:
                    vary.append(name)
    if "private" in cc or "no-store" in cc or "no-cache" in cc:
        return None
    if authorized_request and "public" not in cc and "s-maxage" not in cc:
        return None
    ttl = route_ttl
    for d in ("s-maxage", "max-age"):
        if d in cc:
            try:
                ttl = float(int(cc[d]))
            except ValueError:
                return None
            break
    if ttl <= 0:
        return None
    return ttl, tuple(vary)


class ResponseCache:
    """An LRU of :class:`Entry` bounded by total bytes."""

    def __init__(self, max_bytes: int = 64 * 1024 * 1024, clock=time.monotonic) -> None:
        self.max_bytes = max_bytes
        self.bytes = 0
        self._clock = clock
        self._entries: OrderedDict[tuple, Entry] = OrderedDict()
        #: primary key → header names the answer varies on, and how many entries are stored under
        #: it (dropped with the last: kept forever, one per URL ever cached, it outgrew the bound)
        self._vary: dict[tuple, tuple[bytes, ...]] = {}
        self._stored: dict[tuple, int] = {}

    @staticmethod
    def primary_key(route: str, target: str, caller: object = None, host: bytes | None = None) -> tuple:
        return (route, target, caller, host)

    def _key(self, primary: tuple, vary: tuple[bytes, ...], headers: list[tuple[bytes, bytes]]) -> tuple:
        if not vary:
            return primary
        values = []
        for name in vary:
            vals = [v for k, v in headers if k == name]
            values.append(b",".join(vals))
        return (primary, tuple(values))

    def lookup(self, primary: tuple, route_vary: tuple[bytes, ...],
               headers: list[tuple[bytes, bytes]]) -> Entry | None:
        """The entry for a request (fresh or stale: the caller checks ``expires``), moved to the LRU end."""
        vary = self._vary.get(primary, route_vary)
        key = self._key(primary, vary, headers)
        e = self._entries.get(key)
        if e is None:
            return None
        if self._clock() > e.stale_until:
            self._drop(key)
            return None
        self._entries.move_to_end(key)
        return e

    def store(self, primary: tuple, route_vary: tuple[bytes, ...], request_headers: list[tuple[bytes, bytes]],
              status: int, headers: list[tuple[bytes, bytes]], body: bytes, ttl: float, stale: float,
              response_vary: tuple[bytes, ...] = ()) -> Entry | None:
        """Store an answer; returns the entry, or None when it is larger than the whole cache."""
        vary = tuple(dict.fromkeys(route_vary + response_vary))
        kept = [(k, v) for k, v in headers if k not in _NOT_STORED]
        size = len(body) + sum(len(k) + len(v) for k, v in kept) + _OVERHEAD
        if size > self.max_bytes:
            return None
        now = self._clock()
        key = self._key(primary, vary, request_headers)
        if key in self._entries:
            self._drop(key)
        self._vary[primary] = vary
        self._stored[primary] = self._stored.get(primary, 0) + 1
        e = Entry(status, kept, body, now, now + ttl, now + ttl + stale, size)
        self._entries[key] = e
        self.bytes += size
        while self.bytes > self.max_bytes and self._entries:
            self._drop(next(iter(self._entries)))
        return e

    def _drop(self, key: tuple) -> None:
        e = self._entries.pop(key, None)
        if e is not None:
            self.bytes -= e.size
            primary = key[0] if isinstance(key[0], tuple) else key  # (primary, vary values) or primary
            n = self._stored.pop(primary, 1) - 1
            if n > 0:
                self._stored[primary] = n
            else:
                self._vary.pop(primary, None)

    def purge(self, route: str | None = None, prefix: str | None = None) -> int:
        """Drop entries (of one route, and/or whose target starts with ``prefix``); returns how many."""
        n = 0
        for key in list(self._entries):
            primary = key[0] if isinstance(key[0], tuple) else key  # (primary, vary values) or primary
            if (route is None or primary[0] == route) and (prefix is None or primary[1].startswith(prefix)):
                self._drop(key)
                n += 1
        return n

    def __len__(self) -> int:
        return len(self._entries)
