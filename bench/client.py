"""Service client vs raw aiohttp, calling the same upstream instance, side by side.

- ``meshkit client`` — ``await client.get("catalog", path)``: resolved in a
  registry view, balanced, breaker/outlier bookkeeping, retry budget, deadline
  and trace/request-id headers, on the pooled :mod:`meshkit.basis.http` transport;
- ``raw aiohttp`` — ``session.get(url)`` on one ``aiohttp.ClientSession`` to the
  instance's address, the body read, no headers added;
- ``bare transport`` (for reference) — ``HttpTransport.request`` to the same
  address with no headers: what the client's own work costs on top of it.

The upstream runs as a subprocess: the catalog service (``python -m
meshkit.services.catalog.main`` with an embedded NATS, found through a NATS
registry view, ``GET /products?limit=10``) when that module exists, else a
trivial Starlette app on uvicorn (``GET /products?limit=10`` answering a fixed
JSON list, found through a memory registry). Both sides run with the same
concurrency, in alternating rounds, so a noisy neighbour hurts both alike.

Options: ``--seconds S`` (per side, default 5), ``--concurrency N`` (default 32),
``--upstream auto|catalog|starlette``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
import tempfile
import time
from importlib.util import find_spec

from bench._common import free_port, load, percentile, run, stop, wait_port

PATH = "/products?limit=10"
_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ROUNDS = 2
WARMUP = 0.5


# -- the upstream ---------------------------------------------------------------------------


def _serve(port: int) -> None:
    """Fallback upstream (run in a subprocess): a Starlette app on uvicorn."""
    import orjson
    import uvicorn
    from starlette.applications import Starlette
    from starlette.responses import Response
    from starlette.routing import Route

    items = orjson.dumps({"items": [{"id": f"p{i}", "name": f"Product {i}", "price": {"amount": 1000 + i,
                                                                                     "currency": "EUR"}}
                                    for i in range(10)], "next": None})

    async def products(request):
        return Response(items, media_type="application/json")

    async def livez(request):
        return Response(b'{"status":"ok"}', media_type="application/json")

    app = Starlette(routes=[Route("/products", products), Route("/livez", livez)])
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False,
                loop="uvloop", http="httptools", lifespan="off")


@contextlib.asynccontextmanager
async def _starlette_upstream():
    from meshkit.basis.instance import Instance
    from meshkit.basis.registry.memory import MemoryRegistry
    from meshkit.basis.registry.view import RegistryView

    port = free_port()
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "bench.client", "--serve", str(port),
                                                cwd=_ROOT)
    try:
        await wait_port(port, proc)
        registry = MemoryRegistry("memory://bench-client")
        await registry.register(Instance("catalog", "bench-1", "127.0.0.1", port), ttl=600.0)
        view = await RegistryView(registry).start()
        try:
            yield view, "starlette on uvicorn (subprocess)"
        finally:
            await view.close()
            await registry.close()
    finally:
        await stop(proc)


@contextlib.asynccontextmanager
async def _catalog_upstream():
    from meshkit.basis.natsd import EmbeddedNats
    from meshkit.basis.registry import open_registry
    from meshkit.basis.registry.view import RegistryView

    with tempfile.TemporaryDirectory(prefix="meshkit-bench-client-") as tmp:
        nats = EmbeddedNats(port=0, data_dir=os.path.join(tmp, "nats"), log_file=os.path.join(tmp, "nats.log"))
        await nats.start()
        env = dict(os.environ, MESHKIT_NATS_URL=nats.url, MESHKIT_DATA_DIR=os.path.join(tmp, "data"),
                   MESHKIT_INSTANCE_ID="bench-catalog-1", MESHKIT_LOG_LEVEL="warning")
        log_path = os.path.join(tmp, "catalog.log")
        with open(log_path, "wb") as log:  # noqa: ASYNC230 - opened once, before the load starts
            proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "meshkit.services.catalog.main",
                                                        env=env, stdout=log, stderr=log)
        registry = view = None
        try:
            registry = await open_registry(nats.url)
            view = await RegistryView(registry).start()
            try:
                await view.wait_for("catalog", 1, timeout=30.0)
            except Exception:
                with open(log_path, "rb") as log:  # noqa: ASYNC230 - error path only
                    print(log.read()[-2000:].decode(errors="replace"))
                raise
            yield view, "catalog service (subprocess, SQLite, NATS registry)"
        finally:
            if view is not None:
                await view.close()
            if registry is not None:
                await registry.close()
            await stop(proc)
            await nats.stop()


async def _run(seconds: float, concurrency: int, upstream: str) -> int:
    import aiohttp

    from meshkit.basis.client import ServiceClient
    from meshkit.basis.http import HttpTransport

    use_catalog = upstream == "catalog" or (
        upstream == "auto" and find_spec("meshkit.services.catalog.main") is not None)
    source = _catalog_upstream() if use_catalog else _starlette_upstream()
    async with source as (view, label):
        inst = view.instances("catalog")[0]
        client = ServiceClient(view, caller="bench", transport=HttpTransport(max_connections_per_host=concurrency))
        session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency))
        bare = HttpTransport(max_connections_per_host=concurrency)
        try:
            path = PATH
            if use_catalog:
                # Ten products, so the page the benchmark reads is a real one.
                for i in range(10):
                    r = await client.post("catalog", "/products", json={
                        "name": f"Bench product {i}", "sku": f"BENCH-{i}",
                        "price": {"amount": f"{10 + i}.99", "currency": "EUR"}})
                    if r.status != 201:
                        print(f"note: seeding product {i} answered {r.status}: {r.body[:200]!r}")
            probe = await client.get("catalog", path)
            if probe.status != 200:
                path = "/livez"
                probe = await client.get("catalog", path)
            if probe.status != 200:
                print(f"upstream answered {probe.status} to GET {path}: {probe.body[:200]!r}")
                return 1
            url = f"{inst.url}{path}"

            async def via_client() -> None:
                r = await client.get("catalog", path)
                if r.status != 200:
                    raise RuntimeError(f"client got {r.status}")

            async def via_aiohttp() -> None:
                async with session.get(url) as r:
                    await r.read()
                    if r.status != 200:
                        raise RuntimeError(f"aiohttp got {r.status}")

            async def via_transport() -> None:
                r = await bare.request(inst.address, inst.port, "GET", path)
                if r.status != 200:
                    raise RuntimeError(f"transport got {r.status}")

            sides = {"meshkit client": via_client, "raw aiohttp": via_aiohttp, "bare transport": via_transport}
            results: dict[str, tuple[int, float, list[float]]] = {name: (0, 0.0, []) for name in sides}
            for call in sides.values():  # warm every pool and code path
                await load(call, WARMUP, concurrency)
            per_round = seconds / ROUNDS
            for _ in range(ROUNDS):
                for name, call in sides.items():
                    t0 = time.perf_counter()
                    lat = await load(call, per_round, concurrency)
                    elapsed = time.perf_counter() - t0
                    n, total, all_lat = results[name]
                    results[name] = (n + len(lat), total + elapsed, all_lat + lat)
        finally:
            await session.close()
            await client.close()
            await bare.close()

    print(f"upstream: {label}; GET {path}; concurrency {concurrency}; {seconds:g} s per side "
          f"in {ROUNDS} alternating rounds")
    print(f"{'side':<16} {'requests':>9} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'ratio':>7}")
    base = results["raw aiohttp"][0] / results["raw aiohttp"][1]
    for name, (n, total, lat) in results.items():
        lat.sort()
        rps = n / total
        print(f"{name:<16} {n:>9} {rps:>9.0f} {percentile(lat, 0.5) * 1e3:>8.2f} {percentile(lat, 0.99) * 1e3:>8.2f} "
              f"{rps / base:>6.2f}x")
    return 0


def main(argv: list[str]) -> int:
    """Run the benchmark; ``--serve PORT`` runs the fallback upstream instead."""
    parser = argparse.ArgumentParser(prog="python -m bench.client", description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--upstream", choices=("auto", "catalog", "starlette"), default="auto")
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        _serve(args.serve)
        return 0
    return run(_run(args.seconds, args.concurrency, args.upstream))


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
