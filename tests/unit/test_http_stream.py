"""Streaming responses: bounded buffering, early close, read timeouts, mid-body failures."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from meshkit.basis.http import ConnectionClosed, HttpTransport, RequestTimeout
from meshkit.basis.http.connection import HIGH_WATER

HOST = "127.0.0.1"
FIVE_MB = 5 * 1024 * 1024


@contextlib.asynccontextmanager
async def serve(handler):
    """Run ``handler(reader, writer)`` per connection on a free loopback port; yield (port, counts)."""
    seen = {"connections": 0}

    async def on_conn(reader, writer):
        seen["connections"] += 1
        try:
            while True:
                await reader.readuntil(b"\r\n\r\n")
                if not await handler(reader, writer):
                    break
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(on_conn, HOST, 0)
    try:
        yield server.sockets[0].getsockname()[1], seen
    finally:
        server.close()


async def five_mb(reader, writer):
    block = bytes(range(256)) * 256  # 64 KiB
    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % FIVE_MB)
    for _ in range(FIVE_MB // len(block)):
        writer.write(block)
        await writer.drain()
    return True


async def test_five_megabytes_stream_in_chunks_with_bounded_buffer():
    async with serve(five_mb) as (port, seen), HttpTransport() as t:
        r = await t.stream(HOST, port, "GET", "/big")
        assert r.status == 200 and r.header("content-length") == str(FIVE_MB)
        conn = r._conn
        total, chunks, peak = 0, 0, 0
        async for chunk in r.iter_body():
            total += len(chunk)
            chunks += 1
            peak = max(peak, conn.buffered)
            if chunks % 8 == 0:
                await asyncio.sleep(0.002)  # a slow consumer: the server must be held back
        await r.aclose()
        assert total == FIVE_MB
        assert chunks > 10
        # Never more than the high-water mark plus one socket read (at most 256 KiB) held.
        assert peak <= HIGH_WATER + 256 * 1024
        assert r.consumed
        stats = t.stats()[f"{HOST}:{port}"]
        assert (stats.open, stats.idle) == (1, 1)  # fully read: back in the pool
        again = await t.request(HOST, port, "GET", "/big")
        assert len(again.body) == FIVE_MB
        assert seen["connections"] == 1


async def test_closing_a_stream_early_closes_the_connection():
    async with serve(five_mb) as (port, seen), HttpTransport() as t:
        async with await t.stream(HOST, port, "GET", "/big") as r:
            async for _ in r.iter_body():
                break
        assert not r.consumed
        assert t.stats()[f"{HOST}:{port}"].open == 0
        assert len((await t.request(HOST, port, "GET", "/big")).body) == FIVE_MB
        assert seen["connections"] == 2


async def test_chunked_stream_and_read():
    async def handler(reader, writer):
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        for i in range(5):
            writer.write(b"%x\r\nline %d\n\r\n" % (len(b"line 0\n"), i))
            await writer.drain()
            await asyncio.sleep(0.005)
        writer.write(b"0\r\n\r\n")
        return True

    async with serve(handler) as (port, seen), HttpTransport() as t:
        r = await t.stream(HOST, port, "GET", "/events")
        assert await r.read() == b"".join(b"line %d\n" % i for i in range(5))
        await r.aclose()
        r = await t.stream(HOST, port, "GET", "/events")
        chunks = [c async for c in r.iter_body()]
        assert len(chunks) >= 2  # delivered as they came, not all at the end
        assert seen["connections"] == 1


async def test_head_stream_has_no_body_and_releases_the_connection():
    async def handler(reader, writer):
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 123\r\n\r\n")
        return True

    async with serve(handler) as (port, _), HttpTransport() as t:
        async with await t.stream(HOST, port, "HEAD", "/", timeout=2) as r:
            assert r.header("content-length") == "123"
        assert t.stats()[f"{HOST}:{port}"].idle == 1


async def test_stream_read_timeout():
    async def handler(reader, writer):
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")
        await writer.drain()
        await asyncio.sleep(2)
        return False

    async with serve(handler) as (port, _), HttpTransport() as t:
        r = await t.stream(HOST, port, "GET", "/", read_timeout=0.1)
        with pytest.raises(RequestTimeout):
            await r.read()
        assert t.stats()[f"{HOST}:{port}"].open == 0


async def test_stream_connection_lost_mid_body():
    async def handler(reader, writer):
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nabc")
        await writer.drain()
        return False

    async with serve(handler) as (port, _), HttpTransport() as t:
        r = await t.stream(HOST, port, "GET", "/")
        got = []
        with pytest.raises(ConnectionClosed) as info:
            async for chunk in r.iter_body():
                got.append(chunk)
        assert b"".join(got) == b"abc"  # what arrived is delivered before the error
        assert info.value.received
        await r.aclose()


async def test_stream_timeout_covers_waiting_for_headers():
    async def handler(reader, writer):
        await asyncio.sleep(2)
        return False

    async with serve(handler) as (port, _), HttpTransport() as t:
        with pytest.raises(RequestTimeout):
            await t.stream(HOST, port, "GET", "/", timeout=0.1)
