"""Scripted HTTP/1.1 servers on loopback for the transport's tests: exact bytes, counted connections."""

from __future__ import annotations

import asyncio
import contextlib

HOST = "127.0.0.1"


class Upstream:
    """What a scripted server saw: connections accepted and requests read."""

    def __init__(self) -> None:
        self.port = 0
        self.connections = 0
        self.requests: list[bytes] = []
        self.open = 0
        self.max_open = 0


async def read_request(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
    """One request: (head, body); the body framed by Content-Length."""
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    body = await reader.readexactly(length) if length else b""
    return head, body


@contextlib.asynccontextmanager
async def serve(handler):
    """Run ``handler(reader, writer, upstream)`` per connection on a free loopback port."""
    up = Upstream()
    writers = []

    async def on_conn(reader, writer):
        up.connections += 1
        up.open += 1
        up.max_open = max(up.max_open, up.open)
        writers.append(writer)
        try:
            await handler(reader, writer, up)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            up.open -= 1
            writer.close()

    server = await asyncio.start_server(on_conn, HOST, 0)
    up.port = server.sockets[0].getsockname()[1]
    try:
        yield up
    finally:
        server.close()
        for w in writers:
            w.close()


def responder(response: bytes, *, delay: float = 0.0):
    """A keep-alive server answering every request with ``response``."""

    async def handler(reader, writer, up):
        while True:
            head, body = await read_request(reader)
            up.requests.append(head + body)
            if delay:
                await asyncio.sleep(delay)
            writer.write(response)
            await writer.drain()

    return handler


OK = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Type: text/plain\r\n\r\nhello"
