"""Responses: :class:`HttpResponse` (buffered) and :class:`StreamingResponse` (body read on demand).

Headers are kept exactly as received, a list of ``(name, value)`` bytes pairs in
wire order (duplicates included), because that is what the parser hands over
and what a proxy forwards; building a dict per response would cost time on the
hot path for lookups most callers never make. :meth:`HttpResponse.header`
does the case-insensitive lookup when asked.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import orjson

if TYPE_CHECKING:
    from meshkit.basis.http.connection import Connection
    from meshkit.basis.http.pool import ConnectionPool


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

    __slots__ = ("body", "headers", "status")

    def __init__(self, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body

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
