"""Serialising a request to bytes: one ``bytes.join`` per request, no per-request objects.

Why this shape: on loopback the cost of a request is mostly Python work, so the
request line, the ``Host`` line and the method table are precomputed bytes and
the whole head (and a small body) is joined once and written with a single
``transport.write``. A large body (over :data:`INLINE_BODY_MAX`) is not copied
into the head; the connection writes both with ``writelines``.

Rules kept here, so every caller gets them:

- ``Host`` comes from the pool (``host:port``) unless the caller sent one.
- ``Content-Length`` is always computed from ``body``; a caller's
  ``Content-Length`` or ``Transfer-Encoding`` is dropped (a proxy forwarding
  them verbatim would otherwise frame the body wrongly). It is sent when there is
  a body, and as ``0`` for POST/PUT/PATCH without one; no ``Expect``, no chunked
  uploads.
- A CR or LF in the target, a header name or a value raises
  :class:`~meshkit.basis.http.errors.InvalidRequest` (header injection / request
  smuggling), as does a space or control character in the target.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

from meshkit.basis.http.errors import InvalidRequest

#: Bodies up to this size are copied into the head and sent with one ``write``.
INLINE_BODY_MAX = 64 * 1024

#: Methods whose repetition has the same effect as one call (RFC 9110 §9.2.2):
#: the only ones the transport retries by itself on a stale connection.
IDEMPOTENT = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS", "TRACE"})

_BODY_EXPECTED = frozenset({"POST", "PUT", "PATCH"})
_METHODS = {m: m.encode() for m in ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE")}
_DROPPED = frozenset({b"content-length", b"transfer-encoding"})
_SPECIAL = _DROPPED | {b"host", b"connection"}
_BAD_TARGET = re.compile(r"[\x00-\x20\x7f]")
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")

Headers = Mapping[str, str] | Iterable[tuple[bytes | str, bytes | str]]


def method_bytes(method: str) -> bytes:
    """The method as bytes; a method outside the usual ones is checked to be a token."""
    b = _METHODS.get(method)
    if b is None:
        if not _TOKEN.fullmatch(method):
            raise InvalidRequest(f"invalid HTTP method {method!r}: use a token such as GET or POST")
        b = _METHODS[method] = method.encode("ascii")
    return b


def host_line(host: str, port: int) -> bytes:
    """The ``Host`` header line for an upstream (IPv6 literals in brackets, port 80 left out)."""
    name = f"[{host}]" if ":" in host and not host.startswith("[") else host
    value = name if port == 80 else f"{name}:{port}"
    return b"Host: " + value.encode("idna" if not value.isascii() else "ascii") + b"\r\n"


_COLON = b": "
#: First bytes of the special names in any case: only such names are lower-cased to be checked.
_SPECIAL_FIRST = frozenset(b"hHcCtT")


def _plain_block(headers: list) -> bytes | None:
    """The header lines of a list of ``bytes`` pairs with no name that needs special handling, else ``None``.

    The common shape (a proxy forwarding headers, a client adding a few): one
    C-level join and two counts over the joined block, and a plain loop over
    the names (timed: for a dozen headers it costs half of what scanning the
    joined block once per special name did). ``None`` (the exact pass in
    :func:`encode_request`) when a name is ``host``, ``content-length``,
    ``transfer-encoding`` or ``connection`` in any case, or an item is not a
    pair of ``bytes``; :class:`InvalidRequest` for a CR or LF inside a name or value.
    """
    if not headers:
        return None
    try:
        block = b"\r\n".join(map(_COLON.join, headers)) + b"\r\n"
        for name, _ in headers:
            if name[0] in _SPECIAL_FIRST and name.lower() in _SPECIAL:
                return None
    except (TypeError, ValueError, AttributeError, IndexError):  # str, not pairs, empty names: the exact pass
        return None
    n = len(headers)
    if block.count(b"\n") != n or block.count(b"\r") != n:
        raise InvalidRequest("a header name or value contains CR or LF: remove line breaks from headers")
    return block


def encode_request(
    method: str, target: str, host: bytes, headers: Headers | None, body: bytes
) -> tuple[bytes, bytes | None, bool]:
    """Serialise one request.

    Returns ``(data, tail, close)``: ``data`` to write first, ``tail`` a large body
    to write after it (``None`` when the body is inlined in ``data``), and
    ``close`` when the caller asked for ``Connection: close``.
    """
    if _BAD_TARGET.search(target) is not None or not target:
        raise InvalidRequest(f"invalid request target {target!r}: percent-encode spaces and control characters")
    parts = [_METHODS.get(method) or method_bytes(method), b" ", target.encode("latin-1"), b" HTTP/1.1\r\n"]
    close = False
    block = _plain_block(headers) if headers.__class__ is list else None
    if block is not None:
        parts.append(block)
        parts.append(host)
    elif headers:
        has_host = False
        n = 0
        start = len(parts)
        if headers.__class__ is list or headers.__class__ is tuple:
            items = headers
        else:
            items = headers.items() if headers.__class__ is dict or isinstance(headers, Mapping) else headers
        for name, value in items:
            if name.__class__ is not bytes:
                name = str(name).encode("latin-1")
            if value.__class__ is not bytes:
                value = str(value).encode("latin-1")
            if not name:
                raise InvalidRequest("a header name is empty: every header needs a name")
            lname = name.lower()
            if lname in _SPECIAL:
                if lname in _DROPPED:
                    continue
                if lname == b"host":
                    has_host = True
                elif b"close" in value.lower():  # Connection: close
                    close = True
            parts += (name, b": ", value, b"\r\n")
            n += 1
        # One C-level count instead of scanning every name and value: each header
        # line contributes exactly one CR and one LF, so any other count means a
        # CR or LF was smuggled into a name or value.
        block = b"".join(parts[start:])
        if block.count(b"\n") != n or block.count(b"\r") != n:
            raise InvalidRequest("a header name or value contains CR or LF: remove line breaks from headers")
        del parts[start:]
        parts.append(block)
        if not has_host:
            parts.append(host)
    else:
        parts.append(host)
    if body.__class__ is str:
        raise TypeError("body must be bytes: encode it (e.g. orjson.dumps(obj) or text.encode())")
    size = len(body)
    if size or method in _BODY_EXPECTED:
        parts.append(b"Content-Length: %d\r\n\r\n" % size)
    else:
        parts.append(b"\r\n")
    if size == 0:
        return b"".join(parts), None, close
    if size <= INLINE_BODY_MAX:
        parts.append(body)
        return b"".join(parts), None, close
    return b"".join(parts), body, close
