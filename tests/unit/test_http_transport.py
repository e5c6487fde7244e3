"""HttpTransport against small scripted asyncio servers on loopback: response framing and keep-alive."""

from __future__ import annotations

import asyncio

import pytest

from helpers.scripted_http import HOST, OK, read_request, responder, serve
from meshkit.basis.http import (
    HttpTransport,
    InvalidRequest,
    ProtocolError,
    TransportError,
)


async def test_content_length_body_headers_and_json():
    body = b'{"a": [1, 2], "b": "x"}'
    resp = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nX-Multi: 1\r\nx-multi: 2\r\nContent-Length: %d\r\n\r\n%s"
    async with serve(responder(resp % (len(body), body))) as up, HttpTransport() as t:
        r = await t.request(HOST, up.port, "GET", "/items?x=1", headers={"x-request-id": "r1"})
        assert r.status == 200
        assert r.body == body
        assert r.json() == {"a": [1, 2], "b": "x"}
        assert r.header("content-type") == "application/json"
        assert r.header("CONTENT-TYPE") == "application/json"
        assert r.header_all("X-MULTI") == ["1", "2"]
        assert r.header("missing") is None
        assert (b"Content-Type", b"application/json") in r.headers
        sent = up.requests[0]
        assert sent.startswith(b"GET /items?x=1 HTTP/1.1\r\n")
        assert f"Host: {HOST}:{up.port}\r\n".encode() in sent
        assert b"x-request-id: r1\r\n" in sent
        assert b"Content-Length" not in sent  # a GET without body sends none


async def test_chunked_body_split_across_writes():
    async def handler(reader, writer, up):
        while True:
            await read_request(reader)
            writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel")
            await writer.drain()
            await asyncio.sleep(0.01)
            writer.write(b"lo\r\n6\r\n world\r\n0\r\n\r\n")
            await writer.drain()

    async with serve(handler) as up, HttpTransport() as t:
        for _ in range(3):
            r = await t.request(HOST, up.port, "GET", "/")
            assert r.body == b"hello world"
        assert up.connections == 1  # chunked framing keeps the connection reusable


async def test_close_delimited_body_is_read_until_eof_and_not_reused():
    async def handler(reader, writer, up):
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\npart one, ")
        await writer.drain()
        await asyncio.sleep(0.01)
        writer.write(b"part two")
        await writer.drain()
        writer.close()

    async with serve(handler) as up, HttpTransport() as t:
        r = await t.request(HOST, up.port, "GET", "/")
        assert r.body == b"part one, part two"
        r = await t.request(HOST, up.port, "GET", "/")
        assert r.body == b"part one, part two"
        assert up.connections == 2
        assert t.stats()[f"{HOST}:{up.port}"].open == 0


async def test_keep_alive_reuses_one_connection():
    async with serve(responder(OK)) as up, HttpTransport() as t:
        for _ in range(20):
            assert (await t.request(HOST, up.port, "GET", "/")).body == b"hello"
        stats = t.stats()[f"{HOST}:{up.port}"]
        assert up.connections == 1
        assert stats.requests == 20
        assert stats.reused == 19
        assert stats.connections_opened == 1
        assert (stats.open, stats.idle, stats.in_use) == (1, 1, 0)


async def test_connection_close_from_server_discards_the_connection():
    async def handler(reader, writer, up):
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok")
        await writer.drain()
        await asyncio.sleep(0.5)  # the server lingers: the client must not wait for, nor reuse, it

    async with serve(handler) as up, HttpTransport() as t:
        for _ in range(3):
            assert (await t.request(HOST, up.port, "GET", "/")).body == b"ok"
        assert up.connections == 3
        stats = t.stats()[f"{HOST}:{up.port}"]
        assert stats.open == 0 and stats.reused == 0


async def test_connection_close_from_caller_closes_after_the_answer():
    async with serve(responder(OK)) as up, HttpTransport() as t:
        await t.request(HOST, up.port, "GET", "/", headers={"Connection": "close"})
        await t.request(HOST, up.port, "GET", "/")
        assert up.connections == 2


async def test_head_204_304_have_no_body_and_keep_the_connection():
    answers = iter(
        [
            b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n",  # HEAD: announces, never sends
            b"HTTP/1.1 204 No Content\r\n\r\n",
            b"HTTP/1.1 304 Not Modified\r\nContent-Length: 50\r\nETag: \"x\"\r\n\r\n",
            OK,
        ]
    )

    async def handler(reader, writer, up):
        while True:
            await read_request(reader)
            writer.write(next(answers))
            await writer.drain()

    async with serve(handler) as up, HttpTransport() as t:
        r = await t.request(HOST, up.port, "HEAD", "/", timeout=2)
        assert (r.status, r.body, r.header("content-length")) == (200, b"", "1000")
        r = await t.request(HOST, up.port, "DELETE", "/x", timeout=2)
        assert (r.status, r.body) == (204, b"")
        r = await t.request(HOST, up.port, "GET", "/", headers={"If-None-Match": '"x"'}, timeout=2)
        assert (r.status, r.body) == (304, b"")
        r = await t.request(HOST, up.port, "GET", "/", timeout=2)
        assert (r.status, r.body) == (200, b"hello")
        assert up.connections == 1


async def test_interim_1xx_answers_are_skipped():
    hints = b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n"
    async with serve(responder(hints + OK)) as up, HttpTransport() as t:
        r = await t.request(HOST, up.port, "GET", "/")
        assert (r.status, r.body) == (200, b"hello")
        assert r.header("link") is None
        assert (await t.request(HOST, up.port, "GET", "/")).status == 200


async def test_a_head_split_across_writes_and_an_interim_answer_in_its_own_write():
    async def handler(reader, writer, up):
        await read_request(reader)
        for piece in (b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\n", b"HTTP/1.1 200 OK\r\nX-A",
                      b": 1\r\nContent-Length: 5\r", b"\n\r\nhel", b"lo"):
            writer.write(piece)
            await writer.drain()
            await asyncio.sleep(0.01)

    async with serve(handler) as up, HttpTransport() as t:
        r = await t.request(HOST, up.port, "GET", "/")
        assert (r.status, r.body) == (200, b"hello")
        assert r.headers == [(b"X-A", b"1"), (b"Content-Length", b"5")]  # nothing of the 103


async def test_post_sends_content_length_and_large_bodies():
    async def handler(reader, writer, up):
        while True:
            head, body = await read_request(reader)
            up.requests.append(head)
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
            await writer.drain()

    big = bytes(range(256)) * 1024  # 256 KiB: written with writelines, not copied into the head
    async with serve(handler) as up, HttpTransport() as t:
        assert (await t.request(HOST, up.port, "POST", "/e", body=big)).body == big
        assert (await t.request(HOST, up.port, "PUT", "/e", body=b"small")).body == b"small"
        assert (await t.request(HOST, up.port, "POST", "/e")).body == b""
        assert b"Content-Length: 262144\r\n" in up.requests[0]
        assert b"Content-Length: 0\r\n" in up.requests[2]
        assert up.connections == 1


async def test_invalid_response_is_protocol_error():
    async with serve(responder(b"HTTP/1.1 abc\r\n\r\n")) as up, HttpTransport() as t:
        with pytest.raises(ProtocolError):
            await t.request(HOST, up.port, "GET", "/")
        assert t.stats()[f"{HOST}:{up.port}"].open == 0


async def test_an_answer_past_the_size_limits_is_a_protocol_error(monkeypatch):
    # Before: headers and a buffered body were taken whatever their size: one upstream could
    # fill the caller's (the gateway's) memory.
    from meshkit.basis.http import connection

    huge_head = b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * (70 * 1024) + b"\r\nContent-Length: 2\r\n\r\nok"
    async with serve(responder(huge_head)) as up, HttpTransport() as t:
        with pytest.raises(ProtocolError, match="headers exceed"):
            await t.request(HOST, up.port, "GET", "/")
        assert t.stats()[f"{HOST}:{up.port}"].open == 0
    monkeypatch.setattr(connection, "MAX_BUFFERED_BODY", 1000)
    big_body = b"HTTP/1.1 200 OK\r\nContent-Length: 5000\r\n\r\n" + b"x" * 5000
    async with serve(responder(big_body)) as up, HttpTransport() as t:
        with pytest.raises(ProtocolError, match="body exceeds 1000 bytes; stream it"):
            await t.request(HOST, up.port, "GET", "/")
        async with await t.stream(HOST, up.port, "GET", "/") as r:  # streamed: no limit
            assert len(b"".join([c async for c in r.iter_body()])) == 5000


async def test_a_switch_of_protocols_nobody_asked_for_is_a_protocol_error():
    # Before: the 101 was handed out as the answer (the caller took "101" for a result).
    switch = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"
    async with serve(responder(switch)) as up, HttpTransport() as t:
        with pytest.raises(ProtocolError, match="switched protocols"):
            await t.request(HOST, up.port, "GET", "/")
        assert t.stats()[f"{HOST}:{up.port}"].open == 0


async def test_header_injection_is_refused_before_connecting():
    async with HttpTransport() as t:
        with pytest.raises(InvalidRequest):
            await t.request(HOST, 1, "GET", "/", headers={"x-a": "1\r\nx-evil: 2"})
        with pytest.raises(InvalidRequest):
            await t.request(HOST, 1, "GET", "/a b")


async def test_closed_transport_refuses_requests():
    async with serve(responder(OK)) as up:
        t = HttpTransport()
        await t.request(HOST, up.port, "GET", "/")
        await t.close()
        with pytest.raises(TransportError, match="closed"):
            await t.request(HOST, up.port, "GET", "/")
