"""Answers as bytes on the wire: status line, header lines, framing (HTTP/1.1, RFC 9112).

Used by :mod:`meshkit.gateway.protocol`. A buffered answer goes out in one
``write`` (one syscall); a streamed one chunk by chunk, chunked unless it has a
length (or the client speaks HTTP/1.0), waiting while the client does not read.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from meshkit.gateway.messages import STATUS_LINES, Response, status_line

if TYPE_CHECKING:
    from meshkit.gateway.protocol import HttpProtocol

log = logging.getLogger("meshkit.gateway")

_BUSY_BODY = (b'{"error":{"reason":"too_many_connections","message":"the gateway has as many client '
              b'connections open as it takes; retry in a moment"}}')
#: The whole answer to a connection past ``Limits.max_connections``, then closed.
TOO_MANY_CONNECTIONS = (b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n"
                        b"retry-after: 1\r\nconnection: close\r\ncontent-length: %d\r\n\r\n%s"
                        % (len(_BUSY_BODY), _BUSY_BODY))


def bodiless(status: int) -> bool:
    """An answer that never has a body (RFC 9112 §6.3): no content-length of ours, no chunks."""
    return status == 204 or status == 304 or status < 200


def head_lines(resp: Response, keep: bool) -> tuple[list[bytes], bool]:
    """The status line and header lines of ``resp`` (``connection: close`` unless ``keep``), and
    whether a ``content-length`` was among them."""
    parts = [status_line(resp.status)]
    if resp.head is not None:
        parts.append(resp.head)
    has_length = False
    for k, v in resp.headers:
        if k == b"content-length":
            has_length = True
        parts += (k, b": ", v, b"\r\n")
    if not keep:
        parts.append(b"connection: close\r\n")
    return parts, has_length


def write_buffered(t: asyncio.Transport, resp: Response, keep: bool, is_head: bool) -> None:
    """A buffered answer: status line, headers and body in one write (one syscall)."""
    head = resp.head
    if head is not None and not resp.headers:  # serialised by the proxy's hot path
        t.write(b"".join((STATUS_LINES.get(resp.status) or status_line(resp.status), head,
                          b"" if keep else b"connection: close\r\n",
                          b"content-length: %d\r\n\r\n" % len(resp.body), b"" if is_head else resp.body)))
        return
    parts, has_length = head_lines(resp, keep)
    no_body = bodiless(resp.status)
    if not has_length and not no_body:
        parts += (b"content-length: ", b"%d" % len(resp.body), b"\r\n")
    parts.append(b"\r\n")
    if not is_head and not no_body:
        parts.append(resp.body)
    t.write(b"".join(parts))


async def send_streamed(conn: HttpProtocol, t: asyncio.Transport, resp: Response, keep: bool, head: bool,
                        http10: bool) -> None:
    """Send ``resp.stream`` on ``conn``; runs ``resp.on_close`` at the end, whatever happens."""
    if bodiless(resp.status):
        head = True  # a 204 or 304 ends with its head: a chunked body's last chunk would be read as the next answer
    chunked = not head and not any(k == b"content-length" for k, _ in resp.headers)
    if chunked and http10:
        # HTTP/1.0 has no chunked coding: the body is what comes until the connection closes.
        chunked = keep = False
        conn.closing = True  # (the protocol closes it once the body is out)
    parts, _ = head_lines(resp, keep)
    if chunked:
        parts.append(b"transfer-encoding: chunked\r\n")
    parts.append(b"\r\n")
    t.write(b"".join(parts))
    try:
        if not head:
            async for chunk in resp.stream:  # type: ignore[union-attr]
                if not chunk:
                    continue
                if t.is_closing():
                    return
                if chunked:
                    t.write(b"%x\r\n%b\r\n" % (len(chunk), chunk))
                else:
                    t.write(chunk)
                if conn.write_ready is not None:  # the client is not reading: wait until it does
                    await conn.write_ready.wait()
            if chunked:
                t.write(b"0\r\n\r\n")
    except Exception as exc:
        # The body broke off (the upstream died mid-answer): the head is out, so the only way
        # left to tell the client is to cut the connection before the body is complete.
        log.warning("streamed answer broke off, closing the client connection: %s", exc)
        conn.closing = True
        t.abort()
    finally:
        if resp.on_close is not None:
            await resp.on_close()


def release_unsent(resp: Response) -> None:
    """An answer the client left before it was sent: still release what it holds (a streamed
    answer's upstream connection and bulkhead slot), as :func:`send_streamed` does once sent."""
    if resp.on_close is not None:
        task = asyncio.get_running_loop().create_task(resp.on_close())
        task.add_done_callback(lambda t: t.cancelled() or t.exception())
