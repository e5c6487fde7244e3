"""HttpTransport against a real Starlette app on uvicorn (loopback), as the service client uses it."""

from __future__ import annotations

import asyncio

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from meshkit.basis.http import HttpTransport

HOST = "127.0.0.1"


async def info(request: Request) -> JSONResponse:
    return JSONResponse(
        {"path": request.url.path, "query": request.url.query, "request_id": request.headers.get("x-request-id")}
    )


async def echo(request: Request) -> Response:
    return Response(await request.body(), media_type=request.headers.get("content-type", "application/octet-stream"))


async def events(request: Request) -> StreamingResponse:
    async def gen():
        for i in range(50):
            yield b"%05d" % i + b"." * 10_000
            await asyncio.sleep(0)

    return StreamingResponse(gen(), media_type="application/octet-stream")


async def slow(request: Request) -> Response:
    await asyncio.sleep(float(request.query_params.get("s", "0.02")))
    return Response(b"done")


async def status(request: Request) -> Response:
    return Response(status_code=int(request.path_params["code"]))


APP = Starlette(
    routes=[
        Route("/info", info, methods=["GET", "HEAD"]),
        Route("/echo", echo, methods=["POST", "PUT"]),
        Route("/events", events),
        Route("/slow", slow),
        Route("/status/{code:int}", status),
    ]
)


@pytest.fixture(scope="module")
async def upstream():
    """A uvicorn server with a 1 s keep-alive timeout, on a free port."""
    config = uvicorn.Config(APP, host=HOST, port=0, log_level="warning", lifespan="off", timeout_keep_alive=1)
    server = uvicorn.Server(config)
    task = asyncio.ensure_future(server.serve())
    for _ in range(200):
        if server.started:
            break
        await asyncio.sleep(0.02)
    assert server.started, "uvicorn did not start"
    yield server.servers[0].sockets[0].getsockname()[1]
    server.should_exit = True
    await task


async def test_json_round_trip_with_context_headers(upstream):
    async with HttpTransport() as t:
        r = await t.request(HOST, upstream, "GET", "/info?a=1&b=2", headers={"x-request-id": "req-42"})
        assert r.status == 200
        assert r.header("Content-Type") == "application/json"
        assert r.json() == {"path": "/info", "query": "a=1&b=2", "request_id": "req-42"}


async def test_post_large_body_echo(upstream):
    body = bytes(range(256)) * 4096  # 1 MiB
    async with HttpTransport() as t:
        r = await t.request(HOST, upstream, "POST", "/echo", headers=[(b"content-type", b"application/x-test")], body=body)
        assert r.status == 200 and r.body == body
        assert r.header("content-type") == "application/x-test"


async def test_chunked_streaming_response(upstream):
    async with HttpTransport() as t:
        async with await t.stream(HOST, upstream, "GET", "/events") as r:
            assert r.status == 200
            assert r.header("transfer-encoding") == "chunked"
            data = await r.read()
        assert len(data) == 50 * 10_005
        assert data.startswith(b"00000.") and b"00049." in data
        assert t.stats()[f"{HOST}:{upstream}"].idle == 1


async def test_status_only_answers_and_head(upstream):
    async with HttpTransport() as t:
        for code in (204, 304, 404, 503):
            r = await t.request(HOST, upstream, "GET", f"/status/{code}", timeout=2)
            assert r.status == code
        r = await t.request(HOST, upstream, "HEAD", "/info", timeout=2)
        assert r.status == 200 and r.body == b"" and int(r.header("content-length")) > 0
        assert (await t.request(HOST, upstream, "GET", "/info", timeout=2)).json()["path"] == "/info"
        stats = t.stats()[f"{HOST}:{upstream}"]
        assert stats.connections_opened == 1 and stats.reused == 5


@pytest.mark.timing
async def test_hundred_concurrent_requests_within_the_pool_limit(upstream):
    async with HttpTransport(max_connections_per_host=20) as t:
        results = await asyncio.gather(*(t.request(HOST, upstream, "GET", "/slow?s=0.02") for _ in range(100)))
        assert [r.body for r in results] == [b"done"] * 100
        stats = t.stats()[f"{HOST}:{upstream}"]
        assert stats.connections_opened == 20
        assert (stats.open, stats.in_use, stats.waiting) == (20, 0, 0)
        assert stats.as_dict()["requests"] == 100


async def test_upstream_keep_alive_timeout_is_survived(upstream):
    # Our idle timeout is longer than uvicorn's 1 s: uvicorn closes the idle connections first.
    async with HttpTransport(idle_timeout=30) as t:
        await asyncio.gather(*(t.request(HOST, upstream, "GET", "/slow?s=0.01") for _ in range(5)))
        await asyncio.sleep(1.5)
        for _ in range(3):
            assert (await t.request(HOST, upstream, "PUT", "/echo", body=b"x")).body == b"x"
        stats = t.stats()[f"{HOST}:{upstream}"]
        assert stats.connections_opened == 6
        assert stats.open == 1
