"""One HTTP/1.1 client connection: an ``asyncio.Protocol`` fed by the loop, parsed by httptools.

Why a Protocol and not streams: a ``StreamReader`` adds a buffer, a task wake-up
and a ``readuntil`` scan per response; here the loop hands bytes straight to
``httptools.HttpResponseParser`` (llhttp, in C), whose callbacks are bound
methods of this object, and one future per exchange is resolved when the answer
is complete. No task, no queue, no copy of the body except the final join.

One exchange at a time (no pipelining). :meth:`send` starts an exchange and
returns a future that resolves to an :class:`HttpResponse` (buffered mode) or to
``(status, headers)`` as soon as the headers are in (streaming mode, after which
:meth:`read_chunk` hands out the body). :meth:`send_cb` is the buffered mode
without a future: ``callback(conn, response, exc)`` runs straight from
``data_received`` when the answer is complete (a proxy writes it on at once, with
no task wake-up in between).

Framing the parser cannot know by itself:

- HEAD: llhttp would wait for the ``Content-Length`` bytes it announces; the
  exchange is finished at the end of the headers and the parser replaced.
- Read-until-close bodies (no length, not chunked): complete when the server
  closes; the connection is then, of course, not reused.
- Interim 1xx answers (100 Continue, 103 Early Hints) are skipped.

Streaming flow control: above :data:`HIGH_WATER` buffered body bytes the
socket stops being read (``pause_reading``) until the reader drains below
:data:`LOW_WATER`, so TCP pushes back on the server instead of memory filling up.
"""

from __future__ import annotations

import asyncio
import socket
from collections import deque
from collections.abc import Callable

from httptools import HttpParserError, HttpParserUpgrade, HttpResponseParser

from meshkit.basis.http.errors import ConnectionClosed, ProtocolError, RequestTimeout, TransportError
from meshkit.basis.http.response import HttpResponse

HIGH_WATER = 256 * 1024
LOW_WATER = 64 * 1024
#: An answer's status line and headers may take this many bytes; more is a protocol error.
MAX_HEAD_BYTES = 64 * 1024
#: A buffered (not streamed) answer body may take this many bytes; more is a protocol error
#: (stream it: ``stream=True``). Without a bound, one upstream could fill the caller's memory.
MAX_BUFFERED_BODY = 256 * 1024 * 1024


class _SkipBody(Exception):
    """Raised from ``on_headers_complete`` to stop llhttp waiting for a HEAD body."""


class _Refused(Exception):
    """Raised from a parser callback for an answer the client does not take (too large, 101)."""


class Connection(asyncio.Protocol):
    """A pooled keep-alive connection to one upstream."""

    def __init__(self, loop: asyncio.AbstractEventLoop, host: str, port: int) -> None:
        self._loop = loop
        self.host = host
        self.port = port
        self._parser = HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None
        #: Connected and not lost or closed.
        self.open = False
        #: Exchanges completed on this connection (0: fresh).
        self.responses = 0
        #: Loop time when the connection last went idle in the pool.
        self.idle_since = 0.0
        #: Called once when an idle connection is lost (the pool drops it from its stack).
        self.on_idle_lost: Callable[[Connection], None] | None = None
        self._fut: asyncio.Future | None = None
        #: Callback of a :meth:`send_cb` exchange, and what the caller attached to it.
        self._cb: Callable[[Connection, HttpResponse | None, BaseException | None], None] | None = None
        self.cb_state: object = None
        self._stream = False
        self._head = False
        self._close_after = False
        self._status = 0
        self._headers: list[tuple[bytes, bytes]] = []
        self._body: list[bytes] = []
        self._received = False
        self._headers_done = False
        self._done = True
        self._keep_alive = True
        self._interim = False
        # streaming state
        self._chunks: deque[bytes] = deque()
        self._buffered = 0
        self._head_bytes = 0
        self._paused = False
        self._reader: asyncio.Future | None = None
        self._exc: BaseException | None = None

    # -- asyncio.Protocol --------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.open = True
        sock = transport.get_extra_info("socket")
        if sock is not None:
            try:
                # Small requests must leave at once, not wait for Nagle's ACK.
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except (OSError, AttributeError):
                pass

    def data_received(self, data: bytes) -> None:
        if self._done:
            # Bytes nobody asked for: the framing is lost, the connection unusable.
            self._protocol_error("unexpected data on an idle connection")
            return
        self._received = True
        try:
            self._parser.feed_data(data)
        except HttpParserUpgrade:
            self._protocol_error("the server switched protocols (upgrade is not supported)")
        except HttpParserError as exc:
            if isinstance(exc.__context__, _Refused):
                self._protocol_error(str(exc.__context__))
            elif self._head and self._headers_done:
                # _SkipBody: the answer to HEAD is complete; llhttp's state is not.
                self._parser = HttpResponseParser(self)
                self._finish()
            else:
                self._protocol_error(f"invalid HTTP response: {exc}")

    def eof_received(self) -> bool:
        return False  # let the transport close; connection_lost settles the exchange

    def connection_lost(self, exc: Exception | None) -> None:
        self.open = False
        if self._done:
            if self.on_idle_lost is not None:
                self.on_idle_lost(self)
            return
        if self._headers_done and self._close_delimited():
            self._keep_alive = False
            self._finish()
            return
        why = f": {exc}" if exc else ""
        self._fail(
            ConnectionClosed(
                f"{self.host}:{self.port} closed the connection before the answer was complete{why}",
                host=self.host,
                port=self.port,
                reused=self.responses > 0,
                received=self._received,
            )
        )

    def pause_writing(self) -> None:  # the body is handed over whole; the kernel drains it
        pass

    def resume_writing(self) -> None:
        pass

    # -- httptools callbacks ----------------------------------------------

    def on_header(self, name: bytes, value: bytes) -> None:
        self._head_bytes += len(name) + len(value) + 4
        if self._head_bytes > MAX_HEAD_BYTES:
            raise _Refused(f"the answer's headers exceed {MAX_HEAD_BYTES} bytes")
        self._headers.append((name, value))

    def on_headers_complete(self) -> None:
        status = self._parser.get_status_code()
        if status == 101:  # nothing asked to switch protocols: never an answer to hand out
            raise _Refused("the server switched protocols (upgrade is not supported)")
        if status < 200:
            self._interim = True
            self._headers = []
            self._head_bytes = 0
            return
        self._status = status
        self._keep_alive = self._parser.should_keep_alive()
        self._headers_done = True
        if self._stream:
            fut = self._fut
            if fut is not None and not fut.done():
                fut.set_result((status, self._headers))
        if self._head:
            raise _SkipBody

    def on_body(self, body: bytes) -> None:
        if self._stream:
            self._chunks.append(body)
            self._buffered += len(body)
            if self._buffered > HIGH_WATER and not self._paused:
                self._paused = True
                self.transport.pause_reading()  # type: ignore[union-attr]
            self._wake_reader()
        else:
            self._body.append(body)
            self._buffered += len(body)
            if self._buffered > MAX_BUFFERED_BODY:
                raise _Refused(f"the answer's body exceeds {MAX_BUFFERED_BODY} bytes; stream it (stream=True)")

    def on_message_complete(self) -> None:
        if self._interim:
            self._interim = False
            return
        self._finish()

    # -- exchange ----------------------------------------------------------

    def send(self, data: bytes, tail: bytes | None, *, head: bool, stream: bool, close: bool) -> asyncio.Future:
        """Write a serialised request and return the future of its answer."""
        fut = self._loop.create_future()
        self._fut = fut
        self._start(data, tail, head, stream, close)
        return fut

    def send_cb(self, data: bytes, tail: bytes | None, head: bool, close: bool,
                callback: Callable[[Connection, HttpResponse | None, BaseException | None], None]) -> None:
        """Write a serialised request; ``callback(self, response, None)`` or ``(self, None, exc)`` runs once."""
        self._fut = None
        self._cb = callback
        self._start(data, tail, head, False, close)

    def _start(self, data: bytes, tail: bytes | None, head: bool, stream: bool, close: bool) -> None:
        self._stream = stream
        self._head = head
        self._close_after = close
        self._status = 0
        self._headers = []
        self._head_bytes = 0
        self._received = False
        self._headers_done = False
        self._done = False
        if stream:
            self._chunks.clear()
            self._buffered = 0
            self._exc = None
        else:
            self._body = []
            self._buffered = 0
        if tail is None:
            self.transport.write(data)  # type: ignore[union-attr]
        else:
            self.transport.writelines((data, tail))  # type: ignore[union-attr]

    @property
    def reusable(self) -> bool:
        """True when the last exchange ended cleanly and both sides keep the connection open."""
        return self.open and self._done and self._keep_alive and not self._close_after and not self._chunks

    @property
    def message_done(self) -> bool:
        """True once the current answer has been received in full."""
        return self._done

    @property
    def has_buffered(self) -> bool:
        """True when streamed body bytes are waiting to be read."""
        return bool(self._chunks)

    @property
    def buffered(self) -> int:
        """Streamed body bytes received and not yet read."""
        return self._buffered

    def expire(self, exc: TransportError) -> None:
        """Fail the pending exchange with ``exc`` (the deadline passed); the caller discards us."""
        fut = self._fut
        if fut is not None and not fut.done():
            fut.set_exception(exc)
        elif self._cb is not None:
            self._callback(None, exc)

    async def read_chunk(self, timeout: float | None) -> bytes:
        """The next streamed body chunk, or ``b""`` at the end of the body."""
        while True:
            if self._chunks:
                chunk = self._chunks.popleft()
                self._buffered -= len(chunk)
                if self._paused and self._buffered <= LOW_WATER and self.open:
                    self._paused = False
                    self.transport.resume_reading()  # type: ignore[union-attr]
                return chunk
            if self._exc is not None:
                raise self._exc
            if self._done:
                return b""
            reader = self._reader = self._loop.create_future()
            handle = None
            if timeout is not None:
                handle = self._loop.call_later(timeout, self._read_expired, reader, timeout)
            try:
                await reader
            finally:
                self._reader = None
                if handle is not None:
                    handle.cancel()

    def close(self) -> None:
        """Close the socket now (any exchange in flight fails with ``ConnectionClosed``)."""
        self.open = False
        if self.transport is not None:
            self.transport.close()

    # -- internals ---------------------------------------------------------

    def _read_expired(self, reader: asyncio.Future, timeout: float) -> None:
        if not reader.done():
            reader.set_exception(
                RequestTimeout(
                    f"no body data from {self.host}:{self.port} for {timeout:g} s",
                    host=self.host,
                    port=self.port,
                )
            )

    def _wake_reader(self) -> None:
        reader = self._reader
        if reader is not None and not reader.done():
            reader.set_result(None)

    def _finish(self) -> None:
        self._done = True
        self.responses += 1
        if self._stream:
            fut = self._fut
            if fut is not None and not fut.done():  # HEAD / 204 / 304 streams
                fut.set_result((self._status, self._headers))
            self._wake_reader()
        else:
            body = self._body
            cb = self._cb
            if cb is not None:
                if not self._keep_alive or self._close_after:
                    self.close()
                self._cb = None  # _callback(), inlined: once per answer on the proxy's path
                cb(self, HttpResponse(self._status, self._headers, body[0] if len(body) == 1 else b"".join(body)),
                   None)
                return
            fut = self._fut
            if fut is not None and not fut.done():
                fut.set_result(
                    HttpResponse(
                        self._status, self._headers, body[0] if len(body) == 1 else b"".join(body)
                    )
                )
        self._fut = None
        if not self._keep_alive or self._close_after:
            self.close()

    def _callback(self, response: HttpResponse | None, exc: BaseException | None) -> None:
        cb, self._cb = self._cb, None
        if cb is not None:
            cb(self, response, exc)

    def _fail(self, exc: TransportError) -> None:
        fut = self._fut
        if fut is not None and not fut.done():
            fut.set_exception(exc)
        elif self._cb is not None:
            self._done = True
            self._keep_alive = False
            self.close()
            self._callback(None, exc)
            return
        elif self._stream and not self._done:
            self._exc = exc
            self._wake_reader()
        self._done = True
        self._keep_alive = False
        self._fut = None
        self.close()

    def _protocol_error(self, message: str) -> None:
        self._fail(ProtocolError(f"{self.host}:{self.port}: {message}", host=self.host, port=self.port))

    def _close_delimited(self) -> bool:
        # No Content-Length and not chunked: the body ends when the server closes.
        for name, value in self._headers:
            lname = name.lower()
            if lname == b"content-length" or (lname == b"transfer-encoding" and b"chunked" in value.lower()):
                return False
        return True
