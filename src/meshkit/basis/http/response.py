"""Responses: :class:`HttpResponse` (buffered) and :class:`StreamingResponse` (body read on demand).

Headers are kept exactly as received: :attr:`HttpResponse.raw_head` is the header
lines as they came (one ``name: value\r\n`` per header), and ``headers`` the
``(name, value)`` bytes pairs in wire order (duplicates included), split from it
on first use. A proxy forwards the raw lines without ever splitting them, and
llhttp calls no Python code per header; building a dict per response would cost
time on the hot path for lookups most callers never make.
:meth:`HttpResponse.header` does the case-insensitive lookup when asked.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import orjson

if TYPE_CHECKING:
    from meshkit.basis.http.connection import Connection
    from meshkit.basis.http.pool import ConnectionPool


def parse_head(block: bytes) -> list[tuple[bytes, bytes]]:
    """``(name, value)`` pairs of header lines (``CRLF`` or bare ``LF``; an obsolete folded
    line joins the value before it), values stripped of blanks, in wire order."""
    headers: list[tuple[bytes, bytes]] = []
    for line in block.split(b"\n"):
        line = line.rstrip(b"\r")
        if not line:
            continue
        if line[0] in _BLANKS and headers:  # obs-fold: a continuation of the previous value
            name, value = headers[-1]
            headers[-1] = (name, value + b" " + line.strip(b" \t"))
            continue
        name, _, value = line.partition(b":")
        headers.append((name, value.strip(b" \t")))
    return headers


def head_lines(headers: list[tuple[bytes, bytes]]) -> bytes:
    """Pairs serialised as ``name: value\r\n`` lines (the form of :attr:`HttpResponse.raw_head`)."""
    return b"".join(k + b": " + v + b"\r\n" for k, v in headers)


_BLANKS = b" \t"


def _find(headers: list[tuple[bytes, bytes]], name: str) -> str | None:
    key = name.lower().encode("latin-1")
    for k, v in headers:
        if k.lower() == key:
            return v.decode("latin-1")
    return None


def _find_all(headers: list[tuple[bytes, bytes]], name: str) -> list[str]:
    key = name.lower().encode("latin-1")
    return [v.decode("latin-1") for k, v in headers if k.lower() == key]


class HttpResponse:
    """A complete answer: ``status``, ``headers`` (list of bytes pairs, wire order) and ``body``."""

    __slots__ = ("_headers", "body", "raw_head", "status")

    def __init__(self, status: int, headers: list[tuple[bytes, bytes]] | None, body: bytes,
                 raw_head: bytes | None = None) -> None:
        self.status = status
        self._headers = headers
        self.body = body
        #: The header lines as received, ``name: value\r\n`` each (``None`` when made from pairs).
        self.raw_head = raw_head

    @property
    def headers(self) -> list[tuple[bytes, bytes]]:
        """``(name, value)`` bytes pairs in wire order (split from :attr:`raw_head` on first use)."""
        h = self._headers
        if h is None:
            h = self._headers = parse_head(self.raw_head or b"")
        return h

    @headers.setter
    def headers(self, value: list[tuple[bytes, bytes]]) -> None:
        self._headers = value

    def header(self, name: str) -> str | None:
        """The first value of header ``name`` (any case), or ``None``."""
        return _find(self.headers, name)

    def header_all(self, name: str) -> list[str]:
        """Every value of header ``name`` (any case), in wire order."""
        return _find_all(self.headers, name)

    def json(self) -> Any:
        """The body parsed as JSON (``orjson.JSONDecodeError``, a ``ValueError``, when it is not)."""
        return orjson.loads(self.body)

    def text(self, encoding: str = "utf-8") -> str:
        """The body decoded as text (undecodable bytes replaced)."""
        return self.body.decode(encoding, errors="replace")

    def __repr__(self) -> str:
        return f"<HttpResponse {self.status} {len(self.body)} bytes>"


class StreamingResponse:
    """An answer whose status and headers have arrived and whose body is read on demand.

    Read it with ``async for chunk in r.iter_body()`` (or ``await r.read()``), then
    ``await r.aclose()`` (or use ``async with``). The connection goes back to the
    pool only when the whole body was read; closing early closes the connection,
    since the rest of the body would still be on the wire. While the caller is
    not reading, the connection stops reading from the socket once a bounded
    amount is buffered, so a large body is never held in memory whole.
    """

    __slots__ = ("_conn", "_pool", "_read_timeout", "_state", "headers", "status")

    def __init__(
        self,
        status: int,
        headers: list[tuple[bytes, bytes]],
        conn: Connection,
        pool: ConnectionPool,
        read_timeout: float | None,
    ) -> None:
        self.status = status
        self.headers = headers
        self._conn = conn
        self._pool = pool
        self._read_timeout = read_timeout
        self._state = 0  # 0 reading, 1 body fully read (connection released), 2 closed early

    def header(self, name: str) -> str | None:
        """The first value of header ``name`` (any case), or ``None``."""
        return _find(self.headers, name)

    def header_all(self, name: str) -> list[str]:
        """Every value of header ``name`` (any case), in wire order."""
        return _find_all(self.headers, name)

    @property
    def consumed(self) -> bool:
        """True once the whole body has been read."""
        return self._state == 1

    async def iter_body(self) -> AsyncIterator[bytes]:
        """Yield the body in chunks as they arrive; each wait is bounded by the read timeout.

        Raises :class:`~meshkit.basis.http.errors.ConnectionClosed` when the
        connection ends mid-body and :class:`~meshkit.basis.http.errors.RequestTimeout`
        when no chunk arrives in time (the connection is then closed).
        """
        if self._state:
            if self._state == 2:
                raise RuntimeError("the response was closed before its body was read")
            return
        conn = self._conn
        try:
            while True:
                chunk = await conn.read_chunk(self._read_timeout)
                if not chunk:
                    break
                yield chunk
        except BaseException:
            self._abort()
            raise
        self._state = 1
        self._pool.release(conn)

    async def read(self) -> bytes:
        """The rest of the body, buffered."""
        return b"".join([chunk async for chunk in self.iter_body()])

    async def aclose(self) -> None:
        """Finish with the response: the connection is reused if the body was read, else closed."""
        if self._state == 0:
            if self._conn.message_done and not self._conn.has_buffered:
                # Nothing left unread (e.g. empty body, HEAD, 204): the connection is clean.
                self._state = 1
                self._pool.release(self._conn)
            else:
                self._abort()

    def _abort(self) -> None:
        if self._state == 0:
            self._state = 2
            self._pool.discard(self._conn)

    async def __aenter__(self) -> StreamingResponse:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return f"<StreamingResponse {self.status}>"
