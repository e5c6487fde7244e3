"""One client connection of the gateway's HTTP/1.1 server: an asyncio ``Protocol`` with ``httptools``.

No framework on the hot path: bytes in, one parser callback per piece, one
handler call per request, one ``transport.write`` per buffered response.

Two ways to answer. The general one runs ``handler(req)`` in a task. Before
that, an optional ``fast(req, conn)`` hook may take the request without any task
or future: it returns ``True`` and later calls ``conn.answer(req, response)``
exactly once (from a parser or upstream-connection callback, or at once), or
``False`` to leave the request to the handler. A task and a future wake-up per
request were a measurable share of a proxied request's CPU (see
``docs/benchmarks.md``).

- keep-alive and pipelining: requests on one connection are answered strictly in
  order; reading pauses while too many wait, and no further request is answered
  while the client does not read what was written (back-pressure);
- limits: header bytes → 431, body bytes → 413 (both close the connection, the
  rest of the stream cannot be trusted). The header limit is checked as each
  header completes and, while a head is still arriving, on the bytes received
  for it: an endless header line (which httptools buffers until it ends) is cut
  off at the limit plus one read.

The listening side (accepting, the idle sweeper, TLS, graceful stop) is
:mod:`meshkit.gateway.server`.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING

import httptools

from meshkit.basis.errors import BadRequest, HeadersTooLarge, MeshkitError, PayloadTooLarge
from meshkit.gateway.messages import Request, Response, error_response, request_framing
from meshkit.gateway.wire import TOO_MANY_CONNECTIONS, release_unsent, send_streamed, write_buffered

if TYPE_CHECKING:
    from meshkit.gateway.server import Server


class _Busy:
    """Stands in for the answering task while a ``fast`` hook owns the request."""

    __slots__ = ()

    def done(self) -> bool:
        return False

    def cancel(self) -> None:
        pass


_BUSY = _Busy()
FastHook = Callable[[Request, "HttpProtocol"], bool]


class _Reject(Exception):
    def __init__(self, error: MeshkitError) -> None:
        self.error = error


class HttpProtocol(asyncio.Protocol):
    """One client connection."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.loop = server.loop
        self.limits = server.limits
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.client = ""
        self.pending: deque[Request | _Failed] = deque()
        self.task: asyncio.Task | _Busy | None = None
        self.paused_reading = False
        self.write_ready: asyncio.Event | None = None
        self.closing = False
        self.last_active = self.loop.time()
        self.reading_since: float | None = None
        self._url = b""
        self._headers: list[tuple[bytes, bytes]] = []
        self._header_bytes = 0
        self._in_head = False  # a request's head has begun and is not complete yet
        self._head_seen = 0  # bytes read for it after the read it began in
        self._messages = 0  # requests begun on this connection
        self._body: list[bytes] = []
        self._body_bytes = 0
        self._starting = False  # _start_next is running (see there)
        self.ended = False  # the client half-closed: nothing more will come
        self._head_count = 0  # header fields in the head (those after it are trailers)

    # --- connection -------------------------------------------------------
    def connection_made(self, transport) -> None:  # type: ignore[override]
        self.transport = transport
        peer = transport.get_extra_info("peername")
        self.client = peer[0] if peer else ""
        if len(self.server.connections) >= self.limits.max_connections:
            transport.write(TOO_MANY_CONNECTIONS)
            transport.close()
            return
        self.server.connections.add(self)

    def eof_received(self) -> bool:
        # The client is done sending (a half-close, as `nc -N` or a shutdown(SHUT_WR) does): still
        # answer what it asked, then close. Returning False closed at once, dropping those answers.
        self.ended = True
        # (asyncio's TLS transport closes whatever this says, and warns when it says True)
        return self.server.scheme == "http" and (self.task is not None or bool(self.pending))

    def connection_lost(self, exc) -> None:
        self.server.connections.discard(self)
        self.closing = True
        if self.task is not None and not self.task.done():
            self.task.cancel()
        if self.write_ready is not None:
            self.write_ready.set()

    def pause_writing(self) -> None:
        self.write_ready = asyncio.Event()

    def resume_writing(self) -> None:
        if self.write_ready is not None:
            self.write_ready.set()
            self.write_ready = None
        if self.task is None and not self.closing:  # requests held back while the client was not reading
            if self.pending:
                self._start_next()
            elif self.paused_reading:
                self.resume_reading()

    def data_received(self, data: bytes) -> None:
        if self.reading_since is None:
            self.reading_since = self.last_active = self.loop.time()
        # A read that goes on with a head already begun is all head while that head stays incomplete.
        going_on = self._messages if self._in_head else -1
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserCallbackError as exc:
            ctx = exc.__context__
            self._fail(ctx.error if isinstance(ctx, _Reject) else BadRequest("malformed request"))
            return
        except httptools.HttpParserUpgrade:
            self._fail(BadRequest("protocol upgrade is not supported", reason="upgrade_not_supported"))
            return
        except httptools.HttpParserError:
            self._fail(BadRequest("malformed HTTP request", reason="malformed_request"))
            return
        if going_on == self._messages and self._in_head:
            self._head_seen += len(data)
            if self._head_seen > self.limits.max_header_bytes:
                self._fail(HeadersTooLarge(f"request line and headers exceed {self.limits.max_header_bytes} bytes"))

    def _fail(self, error: MeshkitError) -> None:
        """Answer a request we could not parse (after any earlier ones) and close."""
        self.pause_reading()
        resp = error_response(error)
        resp.close = True
        # Queue it behind pipelined requests so answers stay in order.
        self.pending.append(_Failed(resp))
        if self.task is None:
            self.task = self.loop.create_task(self._run(self.pending.popleft()))

    def pause_reading(self) -> None:
        if not self.paused_reading and self.transport is not None:
            self.paused_reading = True
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self.paused_reading and self.transport is not None and not self.closing and not self.ended:
            self.paused_reading = False
            self.transport.resume_reading()

    # --- parser callbacks -------------------------------------------------
    def on_message_begin(self) -> None:
        self._url = b""
        self._headers = []
        self._header_bytes = 0
        self._in_head = True
        self._head_seen = 0
        self._messages += 1
        self._body = []
        self._body_bytes = 0

    def on_url(self, url: bytes) -> None:
        self._url += url
        self._header_bytes += len(url)
        if self._header_bytes > self.limits.max_header_bytes:
            raise _Reject(HeadersTooLarge(f"request line and headers exceed {self.limits.max_header_bytes} bytes"))

    def on_header(self, name: bytes, value: bytes) -> None:
        # A plain loop per header: cheaper than C-level sums over a dozen headers (measured).
        self._header_bytes += len(name) + len(value) + 4
        if self._header_bytes > self.limits.max_header_bytes:
            raise _Reject(HeadersTooLarge(f"request headers exceed {self.limits.max_header_bytes} bytes"))
        self._headers.append((name.lower(), value))

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._head_count = len(self._headers)
        try:
            body, expect = request_framing(self._headers, self.limits.max_body_bytes)
        except MeshkitError as exc:
            raise _Reject(exc) from None
        if expect and body and self.task is None and not self.pending and self.parser.get_http_version() == "1.1":
            # The client waits for this before sending the body (curl: a second, for bodies over 1 MB).
            # Only when nothing else is being answered on the connection: a 100 is read as part of
            # the answer in progress.
            self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")  # type: ignore[union-attr]

    def on_body(self, body: bytes) -> None:
        self._body_bytes += len(body)
        if self._body_bytes > self.limits.max_body_bytes:
            raise _Reject(PayloadTooLarge(f"request body exceeds the limit of {self.limits.max_body_bytes} bytes"))
        self._body.append(body)

    def on_message_complete(self) -> None:
        p = self.parser
        url = self._url
        if len(self._headers) != self._head_count:
            # Trailer fields of a chunked body: never merged into the head (RFC 9110 §6.5.1), where
            # they would route, authenticate or name the client unseen by whatever checked the head.
            del self._headers[self._head_count:]
        if url[:1] != b"/":
            # absolute-form ("http://host/path?q") or "*". The target's host is the request's host
            # (RFC 9112 §3.2.2): it replaces any Host header, else a proxy in front routing by the
            # one and the gateway by the other would disagree on where the request goes.
            if url.startswith((b"http://", b"https://")):
                rest = url.split(b"://", 1)[1]
                end = len(rest)
                for sep in b"/?":
                    i = rest.find(sep)
                    if 0 <= i < end:
                        end = i
                authority, url = rest[:end], rest[end:]
                if not authority or b"@" in authority:
                    raise _Reject(BadRequest("request target must name a host (and no user)"))
                if url[:1] != b"/":
                    url = b"/" + url
                self._headers = [h for h in self._headers if h[0] != b"host"]
                self._headers.append((b"host", authority))
            else:
                raise _Reject(BadRequest("request target must be a path"))
        if b"#" in url:  # a fragment is the client's own business (RFC 9110 §4.2.4): never sent on
            url = url.partition(b"#")[0]
        path, _, query = url.partition(b"?")
        body = self._body[0] if len(self._body) == 1 else b"".join(self._body)
        req = Request(p.get_method().decode("ascii"), path.decode("latin-1"), query, self._headers, body,
                      p.should_keep_alive(), p.get_http_version(), self.client, self.server.scheme)
        self.reading_since = None
        if self.task is None and self.write_ready is None:
            self._start(req)
        else:
            self.pending.append(req)
            # Also while the client does not read what we wrote: answering more would pile them
            # up in memory (a client pipelining GETs of a large answer and never reading).
            if len(self.pending) >= self.limits.max_pipelined or self.write_ready is not None:
                self.pause_reading()

    # --- answering --------------------------------------------------------
    def _start(self, req: Request) -> None:
        fast = self.server.fast
        if fast is not None:
            self.task = _BUSY
            try:
                if fast(req, self):
                    return
            except Exception as exc:  # a hook bug must not kill the connection silently
                self.server.on_error(exc)
                self.answer(req, error_response(exc))
                return
            self.task = None
        self.task = self.loop.create_task(self._run(req))

    def answer(self, req: Request, resp: Response) -> None:
        """The answer to ``req`` taken by the ``fast`` hook: write it, then serve the next request in line."""
        t = self.transport
        if self.closing or t is None or t.is_closing():
            self.task = None
            self.closing = True
            release_unsent(resp)
            return
        keep = req.keep_alive and not resp.close and not self.server.stopping and not (self.ended and not self.pending)
        if resp.stream is not None:
            self.task = self.loop.create_task(self._run_rest(req, resp, keep))
            return
        self._write(t, resp, keep, req.method == "HEAD")
        self.last_active = self.loop.time()
        if not keep:
            t.close()
            self.closing = True
            self.task = None
            return
        self.task = None
        if self.write_ready is not None:  # the client is not reading: hold the rest (resume_writing goes on)
            self.pause_reading()
        elif self.pending:
            self._start_next()

    async def _run_rest(self, req: Request, resp: Response, keep: bool) -> None:
        # A streamed answer handed to answer(): send it in a task, then go on with the pipeline.
        try:
            await self._send(resp, keep, req.method == "HEAD", req.version == "1.0")
            if not self._went_on(keep):
                return
        finally:
            self.task = None
        if self.pending:
            self._start_next()

    def _went_on(self, keep: bool) -> bool:
        """After a task sent an answer: note the activity and close unless ``keep``; ``keep``."""
        self.last_active = self.loop.time()
        if not keep or self.closing:
            if self.transport is not None:
                self.transport.close()
            self.closing = True
            return False
        return keep

    def _start_next(self) -> None:
        # A loop, not recursion: a fast hook that answers at once calls answer(), which calls
        # this again; thousands of pipelined requests answered that way would exhaust the stack.
        if self._starting:
            return  # answer() from inside the loop below: the loop takes the next one
        self._starting = True
        try:
            while self.pending and self.task is None and not self.closing and self.write_ready is None:
                nxt = self.pending.popleft()
                if self.paused_reading and len(self.pending) < self.limits.max_pipelined // 2:
                    self.resume_reading()
                if isinstance(nxt, _Failed):
                    self.task = self.loop.create_task(self._run(nxt))
                else:
                    self._start(nxt)
        finally:
            self._starting = False

    async def _run(self, req: Request | _Failed) -> None:
        handler = self.server.handler
        try:
            while True:
                if isinstance(req, _Failed):
                    resp = req.response
                else:
                    try:
                        resp = await handler(req)
                    except asyncio.CancelledError:
                        raise
                    except Exception as exc:  # a handler bug must not kill the connection silently
                        self.server.on_error(exc)
                        resp = error_response(exc)
                keep = req.keep_alive and not resp.close and not self.closing and not self.server.stopping \
                    and not (self.ended and not self.pending) \
                    if not isinstance(req, _Failed) else False
                await self._send(resp, keep, req.method == "HEAD" if not isinstance(req, _Failed) else False,
                                 req.version == "1.0" if not isinstance(req, _Failed) else False)
                if not self._went_on(keep) or not self.pending:
                    return
                if self.write_ready is not None:  # the client is not reading: wait until it does
                    self.pause_reading()
                    await self.write_ready.wait()
                    if self.closing:
                        return
                req = self.pending.popleft()
                if self.paused_reading and len(self.pending) < self.limits.max_pipelined // 2:
                    self.resume_reading()
        finally:
            self.task = None

    _write = staticmethod(write_buffered)

    async def _send(self, resp: Response, keep: bool, head: bool, http10: bool = False) -> None:
        t = self.transport
        if t is None or t.is_closing():
            release_unsent(resp)
            return
        if resp.stream is None:
            self._write(t, resp, keep, head)
            return
        await send_streamed(self, t, resp, keep, head, http10)

    def idle(self) -> bool:
        return self.task is None and self.reading_since is None


class _Failed:
    """A parse failure waiting its turn in the pipeline."""

    __slots__ = ("response",)
    keep_alive = False
    method = ""

    def __init__(self, response: Response) -> None:
        self.response = response
