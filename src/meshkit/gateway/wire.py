"""Answers as bytes on the wire: status line, header lines, framing (HTTP/1.1, RFC 9112).

Used by :mod:`meshkit.gateway.protocol`. A buffered answer goes out in one
``write`` (one syscall); a streamed one is framed by the protocol with
:func:`head_lines` and :func:`bodiless`.
"""

from __future__ import annotations

import asyncio

from meshkit.gateway.messages import STATUS_LINES, Response, status_line


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
