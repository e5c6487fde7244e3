"""HttpTransport failures and pool behaviour on loopback: stale connections, refusals, timeouts, limits, expiry."""

from __future__ import annotations

import asyncio
import socket
import time

import pytest

from helpers.scripted_http import HOST, OK, read_request, responder, serve
from meshkit.basis.http import (
    ConnectError,
    ConnectionClosed,
    HttpTransport,
    PoolTimeout,
    RequestTimeout,
)


async def test_server_closing_idle_connection_is_noticed_without_error():
    async def handler(reader, writer, up):
        await read_request(reader)
        writer.write(OK)
        await writer.drain()
        # a keep-alive timeout on the server side: it closes the idle connection

    async with serve(handler) as up, HttpTransport() as t:
        await t.request(HOST, up.port, "GET", "/")
        await asyncio.sleep(0.05)  # the FIN arrives; the pool drops the connection
        assert t.stats()[f"{HOST}:{up.port}"].open == 0
        assert (await t.request(HOST, up.port, "POST", "/", body=b"x")).body == b"hello"
        assert t.stats()[f"{HOST}:{up.port}"].stale_retries == 0


def stale_once():
    """First connection: answer once, then drop the next request unanswered (its FIN crossed it)."""

    async def handler(reader, writer, up):
        first = up.connections == 1
        head, _ = await read_request(reader)
        up.requests.append(head)
        writer.write(OK)
        await writer.drain()
        head, _ = await read_request(reader)
        up.requests.append(head)
        if first:
            return  # closed without a byte of answer
        writer.write(OK)
        await writer.drain()
        await reader.read()

    return handler


async def test_stale_keep_alive_connection_is_retried_for_get():
    async with serve(stale_once()) as up, HttpTransport() as t:
        await t.request(HOST, up.port, "GET", "/one")
        r = await t.request(HOST, up.port, "GET", "/two")
        assert r.body == b"hello"
        assert up.connections == 2
        assert [h.split(b" ")[1] for h in up.requests] == [b"/one", b"/two", b"/two"]
        assert t.stats()[f"{HOST}:{up.port}"].stale_retries == 1


async def test_send_nowait_resends_a_stale_get_once_on_a_fresh_connection():
    async with serve(stale_once()) as up, HttpTransport() as t:
        await t.request(HOST, up.port, "GET", "/one")  # leaves an idle keep-alive connection
        got: asyncio.Future = asyncio.get_running_loop().create_future()
        sent = t.send_nowait(HOST, up.port, "GET", "/two", None, b"", 5.0,
                             lambda response, exc: got.set_result((response, exc)))
        assert sent is True
        response, exc = await asyncio.wait_for(got, 5.0)
        assert exc is None and response.body == b"hello"
        assert up.connections == 2
        assert [h.split(b" ")[1] for h in up.requests] == [b"/one", b"/two", b"/two"]
        assert t.stats()[f"{HOST}:{up.port}"].stale_retries == 1


async def test_send_nowait_hands_a_stale_post_to_the_callback_unsent_again():
    async with serve(stale_once()) as up, HttpTransport() as t:
        await t.request(HOST, up.port, "GET", "/one")
        got: asyncio.Future = asyncio.get_running_loop().create_future()
        assert t.send_nowait(HOST, up.port, "POST", "/pay", None, b"{}", 5.0,
                             lambda response, exc: got.set_result((response, exc)))
        response, exc = await asyncio.wait_for(got, 5.0)
        assert response is None and isinstance(exc, ConnectionClosed) and exc.stale
        assert up.connections == 1 and t.stats()[f"{HOST}:{up.port}"].stale_retries == 0


async def test_stale_keep_alive_connection_is_not_retried_for_post():
    async with serve(stale_once()) as up, HttpTransport() as t:
        await t.request(HOST, up.port, "GET", "/one")
        with pytest.raises(ConnectionClosed) as info:
            await t.request(HOST, up.port, "POST", "/pay", body=b"{}")
        assert info.value.stale and info.value.request_sent
        assert up.connections == 1
        assert t.stats()[f"{HOST}:{up.port}"].stale_retries == 0


async def test_fresh_connection_closed_before_answer_is_not_retried():
    async def handler(reader, writer, up):
        await read_request(reader)  # then hang up without answering

    async with serve(handler) as up, HttpTransport() as t:
        with pytest.raises(ConnectionClosed) as info:
            await t.request(HOST, up.port, "GET", "/")
        assert not info.value.stale and not info.value.reused
        assert up.connections == 1


async def test_connection_closed_mid_body():
    async def handler(reader, writer, up):
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly part")
        await writer.drain()

    async with serve(handler) as up, HttpTransport() as t:
        with pytest.raises(ConnectionClosed) as info:
            await t.request(HOST, up.port, "GET", "/")
        assert info.value.received


async def test_connect_refused_is_connect_error():
    with socket.socket() as s:
        s.bind((HOST, 0))
        port = s.getsockname()[1]  # closed again: nobody listens there
    async with HttpTransport() as t:
        with pytest.raises(ConnectError) as info:
            await t.request(HOST, port, "GET", "/")
        assert not info.value.request_sent
        assert f"{HOST}:{port}" in str(info.value)
        stats = t.stats()[f"{HOST}:{port}"]
        assert (stats.open, stats.connect_errors) == (0, 1)


@pytest.mark.timing
async def test_timeout_is_request_timeout_and_discards_the_connection():
    async with serve(responder(OK, delay=5)) as up, HttpTransport() as t:
        start = time.monotonic()
        with pytest.raises(RequestTimeout) as info:
            await t.request(HOST, up.port, "GET", "/", timeout=0.2)
        assert 0.15 < time.monotonic() - start < 2.5  # far below the 5 s answer, with room for a loaded machine
        assert info.value.request_sent
        assert t.stats()[f"{HOST}:{up.port}"].open == 0


async def test_pool_limit_holds_under_100_concurrent_requests():
    async with serve(responder(OK, delay=0.01)) as up, HttpTransport(max_connections_per_host=10) as t:
        results = await asyncio.gather(*(t.request(HOST, up.port, "GET", f"/{i}") for i in range(100)))
        assert all(r.body == b"hello" for r in results)
        assert len(up.requests) == 100
        assert up.max_open <= 10 and up.connections == 10
        stats = t.stats()[f"{HOST}:{up.port}"]
        assert (stats.open, stats.idle, stats.in_use, stats.waiting) == (10, 10, 0, 0)


@pytest.mark.timing
async def test_waiting_for_a_connection_counts_against_the_timeout():
    async with serve(responder(OK, delay=0.5)) as up, HttpTransport(max_connections_per_host=1) as t:
        slow = asyncio.ensure_future(t.request(HOST, up.port, "GET", "/slow"))
        await asyncio.sleep(0.05)
        with pytest.raises(PoolTimeout) as info:
            await t.request(HOST, up.port, "GET", "/fast", timeout=0.1)
        assert not info.value.request_sent
        assert isinstance(info.value, RequestTimeout)
        assert (await slow).body == b"hello"
        assert len(up.requests) == 1  # the timed-out request never reached the server


async def test_cancelled_request_frees_its_slot():
    async with serve(responder(OK, delay=0.3)) as up, HttpTransport(max_connections_per_host=1) as t:
        task = asyncio.ensure_future(t.request(HOST, up.port, "GET", "/"))
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        r = await t.request(HOST, up.port, "GET", "/", timeout=2)
        assert r.body == b"hello"
        assert t.stats()[f"{HOST}:{up.port}"].open == 1


async def test_idle_connections_expire():
    async with serve(responder(OK)) as up, HttpTransport(idle_timeout=0.1) as t:
        await asyncio.gather(*(t.request(HOST, up.port, "GET", "/") for _ in range(3)))
        assert t.stats()[f"{HOST}:{up.port}"].idle == 3
        await asyncio.sleep(0.3)
        assert t.stats()[f"{HOST}:{up.port}"].open == 0
        await asyncio.sleep(0.05)
        assert up.open == 0  # the server saw them closed


async def test_stale_connection_is_retried_for_a_stream_too():
    async with serve(stale_once()) as up, HttpTransport() as t:
        await t.request(HOST, up.port, "GET", "/one")
        async with await t.stream(HOST, up.port, "GET", "/two") as r:
            assert await r.read() == b"hello"
        assert t.stats()[f"{HOST}:{up.port}"].stale_retries == 1


async def test_discarded_connection_hands_its_slot_to_a_waiter():
    async def handler(reader, writer, up):
        await read_request(reader)
        await asyncio.sleep(0.02)
        writer.write(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok")
        await writer.drain()

    async with serve(handler) as up, HttpTransport(max_connections_per_host=1) as t:
        results = await asyncio.gather(*(t.request(HOST, up.port, "GET", "/", timeout=2) for _ in range(4)))
        assert [r.body for r in results] == [b"ok"] * 4
        assert up.connections == 4 and up.max_open == 1
        stats = t.stats()[f"{HOST}:{up.port}"]
        assert (stats.open, stats.waiting, stats.connections_opened) == (0, 0, 4)
