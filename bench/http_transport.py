"""meshkit's HttpTransport against aiohttp's ClientSession, same upstream, same loop, one run.

Upstream (a subprocess, so client and server do not share a core's GIL):

- ``granian`` (default): a tiny Starlette app on granian (ASGI, one worker, HTTP/1).
- ``raw``: a raw uvloop ``asyncio.Protocol`` server with httptools, for when
  the Starlette app itself is the bottleneck and would hide the client's cost.

Both clients run on uvloop with keep-alive, ``concurrency`` workers looping
for ``seconds`` each, per scenario: ``GET /`` (small JSON) and ``POST /echo``
(1 KiB body echoed), in alternating slices of ``seconds / 5`` so that load from
other processes falls on both alike. Prints requests/s, p50 and p99 latency
and the ratio to aiohttp.

    python -m bench.http_transport [--seconds 5] [--concurrency 50] [--upstream granian|raw]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import subprocess
import sys
import time

import orjson

HOST = "127.0.0.1"
ROUNDS = 5  # slices per client and scenario
PAYLOAD = orjson.dumps({"items": [{"id": i, "name": f"item-{i}"} for i in range(30)]})[:1024]


# -- upstreams (run in the child process) ------------------------------------------


def starlette_app():
    """The upstream app: ``GET /`` answers a small JSON object, ``POST /echo`` echoes."""
    from starlette.applications import Starlette
    from starlette.responses import Response
    from starlette.routing import Route

    hello = orjson.dumps({"hello": "world", "n": 42})

    async def index(request):
        return Response(hello, media_type="application/json")

    async def echo(request):
        return Response(await request.body(), media_type="application/json")

    return Starlette(routes=[Route("/", index), Route("/echo", echo, methods=["POST"])])


def serve_granian(port: int) -> None:
    from granian import Granian
    from granian.constants import Interfaces

    Granian(
        "bench.http_transport:starlette_app",
        address=HOST,
        port=port,
        interface=Interfaces.ASGI,
        factory=True,
        workers=1,
        http="1",
        websockets=False,
        log_enabled=False,
    ).serve()


def serve_raw(port: int) -> None:
    import httptools
    import uvloop

    hello = orjson.dumps({"hello": "world", "n": 42})
    ok_get = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (
        len(hello), hello,
    )

    class Server(asyncio.Protocol):
        def connection_made(self, transport):
            self.transport = transport
            self.parser = httptools.HttpRequestParser(self)
            self.body = []

        def data_received(self, data):
            self.parser.feed_data(data)

        def on_body(self, body):
            self.body.append(body)

        def on_message_complete(self):
            if self.body:
                body = b"".join(self.body)
                self.body = []
                self.transport.write(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
                    % (len(body), body)
                )
            else:
                self.transport.write(ok_get)

    async def run() -> None:
        server = await asyncio.get_running_loop().create_server(Server, HOST, port, backlog=1024)
        await server.serve_forever()

    uvloop.run(run())


# -- clients ------------------------------------------------------------------------


async def drive(call, seconds: float, concurrency: int) -> tuple[float, list[float]]:
    """Run ``call()`` from ``concurrency`` workers for ``seconds``; (req/s, latencies in s)."""
    latencies: list[float] = []
    stop = time.perf_counter() + seconds
    clock = time.perf_counter

    async def worker() -> None:
        record = latencies.append
        while True:
            t0 = clock()
            if t0 >= stop:
                return
            await call()
            record(clock() - t0)

    start = clock()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return len(latencies) / (clock() - start), latencies


def percentile(sorted_values: list[float], p: float) -> float:
    return sorted_values[min(len(sorted_values) - 1, int(len(sorted_values) * p))]


async def run_all(port: int, seconds: float, concurrency: int) -> list[tuple[str, str, float, float, float]]:
    import aiohttp

    from meshkit.basis.http import HttpTransport

    rows = []
    base = f"http://{HOST}:{port}"
    headers = {"content-type": "application/json"}
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=100, limit_per_host=100))
    transport = HttpTransport(max_connections_per_host=100)

    async def aio_get():
        async with session.get(base + "/") as r:
            await r.read()
            assert r.status == 200

    async def aio_post():
        async with session.post(base + "/echo", data=PAYLOAD, headers=headers) as r:
            assert len(await r.read()) == len(PAYLOAD)

    async def mk_get():
        r = await transport.request(HOST, port, "GET", "/")
        assert r.status == 200

    async def mk_post():
        r = await transport.request(HOST, port, "POST", "/echo", headers=headers, body=PAYLOAD)
        assert len(r.body) == len(PAYLOAD)

    scenarios = [("GET /", aio_get, mk_get), ("POST /echo 1KiB", aio_post, mk_post)]
    try:
        for name, aio, mk in scenarios:
            clients = (("aiohttp", aio), ("meshkit", mk))
            for _, call in clients:
                await drive(call, 0.5, concurrency)  # warm up: connections open, code paths hot
            # Alternate the clients in short slices so that load from elsewhere on the
            # machine falls on both alike, then add the slices up.
            done = {client: [0.0, []] for client, _ in clients}
            for _ in range(ROUNDS):
                for client, call in clients:
                    t0 = time.perf_counter()
                    _, lat = await drive(call, seconds / ROUNDS, concurrency)
                    done[client][0] += time.perf_counter() - t0
                    done[client][1] += lat
            for client, (elapsed, lat) in done.items():
                lat.sort()
                rows.append((name, client, len(lat) / elapsed, percentile(lat, 0.5) * 1e3, percentile(lat, 0.99) * 1e3))
    finally:
        await session.close()
        await transport.close()
    return rows


# -- main ---------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def _wait_for_port(port: int, proc: subprocess.Popen, timeout: float = 15.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"the upstream exited with code {proc.returncode}")
        try:
            with socket.create_connection((HOST, port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"the upstream did not listen on {HOST}:{port} within {timeout:g} s")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.http_transport", description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="measured time per client and scenario")
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--upstream", choices=("granian", "raw"), default="granian")
    parser.add_argument("--serve", choices=("granian", "raw"), help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        (serve_granian if args.serve == "granian" else serve_raw)(args.port)
        return 0

    import uvloop

    port = _free_port()
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [os.getcwd(), os.environ.get("PYTHONPATH")])))
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench.http_transport", "--serve", args.upstream, "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
    )
    try:
        _wait_for_port(port, proc)
        rows = uvloop.run(run_all(port, args.seconds, args.concurrency))
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()

    upstream = "Starlette on granian (ASGI, 1 worker)" if args.upstream == "granian" else "raw uvloop+httptools server"
    print(f"HTTP client transport — upstream: {upstream}; concurrency {args.concurrency}, "
          f"{args.seconds:g} s per client and scenario in {ROUNDS} alternating slices, uvloop, keep-alive")
    print(f"{'scenario':<18} {'client':<8} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'ratio':>7}")
    for i in range(0, len(rows), 2):
        base = rows[i][2]
        for name, client, rps, p50, p99 in rows[i : i + 2]:
            print(f"{name:<18} {client:<8} {rps:>9.0f} {p50:>8.2f} {p99:>8.2f} {rps / base:>6.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
