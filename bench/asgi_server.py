"""granian vs uvicorn, embedded the way the runtime embeds them, and the cost of our middleware.

``python -m bench.asgi_server [--duration 4] [--rounds 2]``

Each server runs in a child process on uvloop, on a socket bound by
:func:`meshkit.basis.server.bind_socket`, serving the same trivial Starlette
route; ``wrk -t1 -c50 -d<duration>s --latency`` loads it. Runs:

1. granian, bare router        2. uvicorn, bare router
3. granian, full service stack   4. uvicorn, full service stack
   (errors → context → access log → metrics → gate, as every service runs)

alternating between them for a couple of rounds (best round kept), and prints
req/s, p50, p99 and ratios, then the per-request middleware overhead,
measured two ways: from the wrk runs (1/rps difference) and in-process (the ASGI
app called directly, no network).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import subprocess
import sys
import time

WRK = shutil.which("wrk") or "/usr/bin/wrk"


def _app(stack: str, **switches):
    from starlette.responses import Response
    from starlette.routing import Route, Router

    async def hello(request):
        return Response(b'{"hello":"world"}', media_type="application/json")

    routes = [Route("/hello/{name}", hello)]
    if stack == "bare":
        return Router(routes=routes)
    from meshkit.basis.logs import configure_logging
    from meshkit.basis.service import Service
    from meshkit.basis.settings import ServiceSettings

    settings = ServiceSettings(name="bench", registry_url="memory://bench", **switches)
    configure_logging("info", service="bench", instance="bench-1")
    return Service(settings, routes=routes).app


def _serve(kind: str, stack: str) -> None:
    import uvloop

    from meshkit.basis.server import bind_socket, create_server

    async def main() -> None:
        sock = bind_socket("127.0.0.1", 0)
        server = create_server(kind, _app(stack), sock)
        task = asyncio.create_task(server.serve())
        print(sock.getsockname()[1], flush=True)
        # Until the parent closes our stdin.
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
        server.stop()
        await task

    uvloop.run(main())


def _wrk(port: int, duration: int) -> dict[str, float]:
    out = subprocess.run(
        [WRK, "-t1", "-c50", f"-d{duration}s", "--latency", f"http://127.0.0.1:{port}/hello/world"],
        capture_output=True, text=True, timeout=duration + 30, check=True,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    lat = {p: _ms(v, u) for p, v, u in re.findall(r"^\s+(50|99)%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)}
    return {"rps": rps, "p50": lat.get("50", float("nan")), "p99": lat.get("99", float("nan")),
            "bad": int(errors.group(1)) if errors else 0}


def _ms(value: str, unit: str) -> float:
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def _start(kind: str, stack: str) -> tuple[subprocess.Popen, int]:
    child = subprocess.Popen(
        [sys.executable, "-m", "bench.asgi_server", "--serve", kind, "--stack", stack],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
    )
    return child, int(child.stdout.readline())


def _measure(configs: list[tuple[str, str]], duration: int, rounds: int) -> dict[tuple[str, str], dict]:
    """Load every config in turn, ``rounds`` times, keeping each one's best round: the
    machine is shared, and alternating spreads background load over all of them."""
    children = {cfg: _start(*cfg) for cfg in configs}
    best: dict[tuple[str, str], dict] = {}
    try:
        time.sleep(0.3)
        for cfg in configs:
            _wrk(children[cfg][1], 1)  # warm-up
        for _ in range(rounds):
            for cfg in configs:
                r = _wrk(children[cfg][1], duration)
                if cfg not in best or r["rps"] > best[cfg]["rps"]:
                    best[cfg] = r
    finally:
        for child, _port in children.values():
            child.stdin.close()
        for child, _port in children.values():
            try:
                child.wait(timeout=10)
            except subprocess.TimeoutExpired:
                child.kill()
    return best


def _in_process_overhead(n: int = 3000, repeats: int = 7) -> dict[str, float]:
    """CPU µs per request (best of ``repeats``) of the bare router and of our stack, called directly."""
    import logging

    from meshkit.basis.logs import configure_logging

    scope_base = {
        "type": "http", "http_version": "1.1", "method": "GET", "scheme": "http", "path": "/hello/world",
        "raw_path": b"/hello/world", "query_string": b"", "root_path": "", "server": ("127.0.0.1", 1),
        "client": ("127.0.0.1", 2), "headers": [(b"host", b"x"), (b"user-agent", b"bench"), (b"accept", b"*/*")],
    }

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):
        pass

    async def run(app) -> float:
        for _ in range(300):
            await app(dict(scope_base), receive, send)
        # thread_time, best of several: other processes on a shared machine inflate wall time.
        start = time.thread_time()
        for _ in range(n):
            await app(dict(scope_base), receive, send)
        return (time.thread_time() - start) / n * 1e6

    apps = {
        "bare Starlette router": _app("bare"),
        "+ errors, context, gate": _app("service", access_log=False, request_metrics=False),
        "+ metrics": _app("service", access_log=False),
        "+ access log (full stack)": _app("service"),
    }
    with open(os.devnull, "w") as devnull:
        configure_logging("info", service="bench", instance="bench-1", stream=devnull)

        async def all_runs() -> dict[str, float]:
            best = {k: float("inf") for k in apps}
            for _ in range(repeats):
                for k, app in apps.items():
                    best[k] = min(best[k], await run(app))
            return best

        best = asyncio.run(all_runs())
    for h in logging.getLogger().handlers[:]:
        logging.getLogger().removeHandler(h)
        h.close()
    return best


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.asgi_server")
    ap.add_argument("--duration", type=int, default=4)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--serve", choices=["granian", "uvicorn"])
    ap.add_argument("--stack", choices=["bare", "service"], default="bare")
    args = ap.parse_args(argv)
    if args.serve:
        _serve(args.serve, args.stack)
        return 0
    if not os.path.exists(WRK):
        print("wrk not found: install it (apt-get install wrk) to run this benchmark")
        return 1
    configs = [("granian", "bare"), ("uvicorn", "bare"), ("granian", "service"), ("uvicorn", "service")]
    runs = _measure(configs, args.duration, args.rounds)
    print(f"wrk -t1 -c50 -d{args.duration}s, GET /hello/world, one server process on uvloop, "
          f"best of {args.rounds} alternating rounds\n")
    print(f"| {'server':8} | {'stack':8} | {'req/s':>9} | {'p50 ms':>7} | {'p99 ms':>7} | {'non-2xx':>7} |")
    print(f"|{'-' * 10}|{'-' * 10}|{'-' * 11}|{'-' * 9}|{'-' * 9}|{'-' * 9}|")
    for (kind, stack), r in runs.items():
        print(f"| {kind:8} | {stack:8} | {r['rps']:9.0f} | {r['p50']:7.2f} | {r['p99']:7.2f} | {r['bad']:7d} |")
    print()
    for stack in ("bare", "service"):
        g, u = runs[("granian", stack)], runs[("uvicorn", stack)]
        print(f"{stack:8} granian / uvicorn: req/s {g['rps'] / u['rps']:.2f}x, "
              f"p50 {u['p50'] / g['p50']:.2f}x lower, p99 {u['p99'] / g['p99']:.2f}x lower")
    for kind in ("granian", "uvicorn"):
        b, s = runs[(kind, "bare")], runs[(kind, "service")]
        print(f"{kind:8} service stack / bare req/s: {s['rps'] / b['rps']:.2f}x "
              f"-> {(1 / s['rps'] - 1 / b['rps']) * 1e6:.1f} µs per request for the middleware")
    best = _in_process_overhead()
    bare = best["bare Starlette router"]
    print("\nin-process, no network (CPU µs per request, best of 7 x 3000):")
    for name, us in best.items():
        print(f"  {name:28} {us:6.1f} µs  (+{us - bare:.1f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
