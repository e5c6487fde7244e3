"""A precompiled route table: which route answers ``(method, host, path)``.

Compiled once per routes file, then read-only (a reload builds a new table and
swaps it in one assignment). Lookup costs one dict probe for exact paths, else
one dict probe for the first path segment and a short list of candidates in
precedence order:

1. exact paths (``/healthz``);
2. patterns with ``{param}`` segments, more literal segments first, then the
   longer literal prefix (``/items/new`` beats ``/items/{id}``);
3. prefixes and patterns ending in ``*`` / ``{rest...}``, longest literal prefix first;
4. at equal rank a route with a ``host`` beats one without, then file order wins.

A prefix is segment-aware: ``/api/catalog`` matches ``/api/catalog`` and
``/api/catalog/x`` but not ``/api/catalogue``; ``/api/catalog/`` also matches ``/api/catalog``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

_SEGMENT = re.compile(r"^\{([A-Za-z_][A-Za-z0-9_]*)(\.\.\.)?\}$")
EMPTY: dict[str, str] = {}
#: Methods a route without ``methods`` does not take: TRACE (and IIS's TRACK) echo the request,
#: its cookies and credentials included, back to whoever sent it (cross-site tracing). Only an
#: entry compiled with them listed takes them (the routes file accepts neither).
LOOPBACK = frozenset({"TRACE", "TRACK"})
#: What such a route answers in ``Allow`` when asked one of those.
ANY_METHOD = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class PatternError(ValueError):
    """A path pattern that cannot be compiled."""


@dataclass(slots=True)
class Entry:
    """One compiled route: how to match it and what it leads to (``target``)."""

    target: Any
    order: int
    methods: frozenset[str] | None
    host: str | None
    kind: str  # "exact" | "pattern" | "prefix"
    text: str
    literal_prefix: str
    literal_segments: int
    tail: bool
    regex: re.Pattern[str] | None = None
    params: tuple[str, ...] = field(default_factory=tuple)

    def sort_key(self) -> tuple:
        rank = 0 if self.kind == "exact" else (2 if self.tail else 1)
        return (rank, -self.literal_segments, -len(self.literal_prefix), self.host is None, self.order)

    def match_path(self, path: str) -> dict[str, str] | None:
        if self.kind == "prefix":
            p = self.text
            if path.startswith(p):
                if len(path) == len(p) or p[-1] == "/" or path[len(p)] == "/":
                    return EMPTY
                return None
            if p[-1] == "/" and path == p[:-1]:
                return EMPTY
            return None
        m = self.regex.match(path)  # type: ignore[union-attr]
        return m.groupdict() if m else None

    def host_ok(self, host: str) -> bool:
        h = self.host
        if h is None:
            return True
        if h[0] == "*":
            return host.endswith(h[1:])
        return host == h


def compile_entry(target: Any, order: int, *, path: str | None = None, prefix: str | None = None,
                  methods: Sequence[str] | None = None, host: str | None = None) -> Entry:
    """Compile one route's match; raises :class:`PatternError` with a readable message."""
    mset = frozenset(methods) if methods else None
    if mset and "GET" in mset:
        mset = mset | {"HEAD"}  # HEAD is GET without a body, everywhere
    if prefix is not None:
        lits = [s for s in prefix.split("/") if s]
        if any("{" in s or "}" in s or s == "*" for s in lits):
            raise PatternError(f"prefix {prefix!r} must be literal; use 'path' for {{param}} or '*' patterns")
        return Entry(target, order, mset, host, "prefix", prefix, prefix, len(lits), True)
    assert path is not None
    segments = path.split("/")[1:]
    regex = ["^"]
    params: list[str] = []
    literal_prefix = "/"
    literal_segments = 0
    in_literal = True
    tail = False
    for i, seg in enumerate(segments):
        last = i == len(segments) - 1
        if seg == "*" or ((m := _SEGMENT.match(seg)) and m.group(2)):
            if not last:
                raise PatternError(f"in {path!r} the wildcard {seg!r} must be the last segment")
            name = "wildcard" if seg == "*" else m.group(1)  # type: ignore[union-attr]
            regex.append(f"/(?P<{name}>.*)")
            params.append(name)
            tail = True
            in_literal = False
            continue
        if (m := _SEGMENT.match(seg)) is not None:
            name = m.group(1)
            if name in params:
                raise PatternError(f"in {path!r} the parameter {{{name}}} appears twice")
            params.append(name)
            regex.append(f"/(?P<{name}>[^/]+)")
            in_literal = False
            continue
        if "{" in seg or "}" in seg or "*" in seg:
            raise PatternError(
                f"in {path!r} the segment {seg!r} is not valid: a {{param}} or '*' must be a whole segment")
        regex.append("/" + re.escape(seg))
        literal_segments += 1
        if in_literal:
            literal_prefix += seg + ("/" if not last else "")
    if not params:
        return Entry(target, order, mset, host, "exact", path, path, literal_segments, False)
    regex.append("$")
    return Entry(target, order, mset, host, "pattern", path, literal_prefix, literal_segments, tail,
                 re.compile("".join(regex)), tuple(params))


class Router:
    """The compiled table. ``match`` returns ``(entry, params)``, or ``(None, allowed_methods)``."""

    def __init__(self, entries: Sequence[Entry]) -> None:
        self.entries = list(entries)
        self.uses_host = any(e.host for e in entries)
        self.exact: dict[str, list[Entry]] = {}
        buckets: dict[str, list[Entry]] = {}
        generic: list[Entry] = []
        for e in entries:
            if e.kind == "exact":
                self.exact.setdefault(e.text, []).append(e)
                continue
            first = _first_segment(e.literal_prefix) if e.literal_segments else None
            # A first segment counts only when it is complete: "/api/" or a segment-aware prefix "/api".
            if first and (e.kind == "prefix" or e.literal_prefix.startswith(f"/{first}/")):
                buckets.setdefault(first, []).append(e)
            else:
                generic.append(e)
        for lst in self.exact.values():
            lst.sort(key=Entry.sort_key)
        generic.sort(key=Entry.sort_key)
        self.generic = generic
        self.buckets = {k: sorted(v + generic, key=Entry.sort_key) for k, v in buckets.items()}

    def match(self, method: str, host: str, path: str) -> tuple[Entry | None, Any]:
        allowed: set[str] | None = None
        lst = self.exact.get(path)
        if lst is not None:
            for e in lst:
                if e.host is None or e.host_ok(host):
                    if e.methods is None:
                        if method not in LOOPBACK:
                            return e, EMPTY
                        allowed = (allowed or set()) | ANY_METHOD
                    elif method in e.methods:
                        return e, EMPTY
                    else:
                        allowed = (allowed or set()) | e.methods
        end = path.find("/", 1)
        first = path[1:end] if end > 0 else path[1:]
        for e in self.buckets.get(first, self.generic):
            params = e.match_path(path)
            if params is None or (e.host is not None and not e.host_ok(host)):
                continue
            if e.methods is None:
                if method not in LOOPBACK:
                    return e, params
                allowed = (allowed or set()) | ANY_METHOD
            elif method in e.methods:
                return e, params
            else:
                allowed = (allowed or set()) | e.methods
        return None, allowed


def _first_segment(literal_prefix: str) -> str:
    return literal_prefix.split("/", 2)[1]


def rewrite_prefix(path: str, literal_prefix: str, new_prefix: str) -> str:
    """Replace ``literal_prefix`` at the start of ``path`` with ``new_prefix``, with exactly one slash between."""
    rest = path[len(literal_prefix):] if path.startswith(literal_prefix) else path[len(literal_prefix) - 1:]
    if not rest:
        out = new_prefix
    elif new_prefix.endswith("/") and rest.startswith("/"):
        out = new_prefix + rest[1:]
    elif not new_prefix.endswith("/") and not rest.startswith("/"):
        out = new_prefix + "/" + rest
    else:
        out = new_prefix + rest
    return out or "/"


def host_of(value: bytes | None) -> str:
    """The host name of a ``Host`` header: lower-cased, port and a final ``.`` removed
    (``Shop.Example.com.:443`` is ``shop.example.com``, the same name to DNS)."""
    if not value:
        return ""
    h = value.decode("latin-1").lower()
    if h.startswith("["):
        return h.split("]", 1)[0] + "]"
    h = h.rsplit(":", 1)[0] if ":" in h else h
    return h[:-1] if h.endswith(".") else h
