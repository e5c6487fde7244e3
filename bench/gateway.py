"""Gateway benchmark: meshkit's gateway against nginx and plain Python proxies, side by side.

One trivial upstream (Starlette on granian, one worker) and, in turn, in front of it:

- ``direct``: no proxy (the ceiling);
- ``nginx``: reverse proxy with upstream keep-alive, one worker;
- ``starlette+aiohttp``: a Starlette app on granian forwarding through one aiohttp session;
- ``starlette+httpx``: the same with an httpx AsyncClient;
- ``floor``: a bare keep-alive proxy on uvloop + httptools (~70 lines, in ``gateway_peers.py``): no routing,
  auth, limits, metrics or error handling, one upstream connection per client connection.
  Not a product anyone would run; it shows what the event loop and the kernel cost per
  request, which no Python proxy on asyncio gets under, so meshkit's distance to it is
  what its features and checks cost;
- ``meshkit``: the gateway (``python -m meshkit.gateway.main``) on a route with auth
  (a bearer JWT, verified once and then cached), a rate limit and metrics on.

Load: ``wrk`` on loopback, one thread, ``--connections`` connections, ``--duration``
seconds per target. Then each proxy's p99 is measured at half of meshkit's peak rate next
to ``direct`` at the same rate (wrk paced with a Lua ``delay``), to get the latency it adds.

Run: ``python -m bench.gateway [--duration 5] [--connections 64] [--only meshkit,nginx]``.
Needs ``wrk`` and ``nginx`` on PATH (``apt-get install wrk nginx``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.gateway_peers import (
    AIOHTTP_PROXY,
    FLOOR_PROXY,
    HTTPX_PROXY,
    NGINX_CONF,
    PACED,
    ROUTES,
    UPSTREAM_APP,
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on port {port} after {timeout}s")


def make_token() -> tuple[str, str]:
    """An Ed25519-signed JWT and the JWKS that verifies it."""
    import base64

    import jwt
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    key = Ed25519PrivateKey.generate()
    raw = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    x = base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
    jwks = json.dumps({"keys": [{"kty": "OKP", "crv": "Ed25519", "x": x, "kid": "bench", "alg": "EdDSA",
                                 "use": "sig"}]})
    now = int(time.time())
    token = jwt.encode({"sub": "bench-user", "iss": "bench", "aud": "meshkit", "iat": now, "nbf": now,
                        "exp": now + 3600, "jti": "bench-1", "permissions": ["bench:read"]},
                       key, algorithm="EdDSA", headers={"kid": "bench"})
    return token, jwks


class Procs:
    """Child processes started by the benchmark, stopped in reverse order."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen] = []

    def start(self, cmd: list[str], **kw) -> subprocess.Popen:
        p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             start_new_session=True, **kw)
        self.procs.append(p)
        return p

    def stop(self, p: subprocess.Popen) -> None:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()

    def stop_all(self) -> None:
        for p in reversed(self.procs):
            self.stop(p)


def granian(procs: Procs, tmp: Path, module: str, port: int) -> subprocess.Popen:
    exe = str(Path(sys.executable).with_name("granian"))
    p = procs.start([exe, "--interface", "asgi", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
                     "--loop", "uvloop", "--no-ws", "--log-level", "warning", f"{module}:app"],
                    cwd=str(tmp), env={**os.environ, "PYTHONPATH": str(tmp)})
    wait_port(port)
    return p


_LAT = re.compile(r"^\s+(50|99)(?:\.000)?%\s+([\d.]+)(us|ms|s)\s*$", re.M)
_UNIT = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def session_cpu(sid: int) -> float:
    """CPU seconds (user + system) used so far by every live process of session ``sid`` (a proxy and its workers)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == sid:  # field 6 of stat: the session id
            total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / tick


def wrk(url: str, duration: float, connections: int, auth: str | None = None,
        script: Path | None = None, cpu_of: subprocess.Popen | None = None) -> dict:
    """One wrk run; with ``cpu_of``, also that process tree's CPU microseconds per request during the run."""
    cmd = ["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(duration))}s", "--latency", "--timeout", "5s"]
    if script is not None:
        cmd += ["-s", str(script)]
    elif auth:
        cmd += ["-H", f"Authorization: {auth}"]
    cpu0 = session_cpu(cpu_of.pid) if cpu_of is not None else 0.0
    done = subprocess.run([*cmd, url], capture_output=True, text=True, timeout=duration + 30)
    cpu = session_cpu(cpu_of.pid) - cpu0 if cpu_of is not None else 0.0
    out = done.stdout
    found = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if found is None:
        raise RuntimeError(f"wrk gave no result for {url}: {out[-500:]} {done.stderr[-500:]}")
    rps = float(found.group(1))
    lat = {m.group(1): float(m.group(2)) * _UNIT[m.group(3)] for m in _LAT.finditer(out)}
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    sock = re.search(r"Socket errors: (.*)", out)
    total = re.search(r"(\d+) requests in", out)
    cpu_us = cpu / int(total.group(1)) * 1e6 if cpu_of is not None and total and int(total.group(1)) else 0.0
    return {"rps": rps, "p50": lat.get("50", 0.0), "p99": lat.get("99", 0.0), "cpu_us": cpu_us,
            "non2xx": int(errors.group(1)) if errors else 0, "socket_errors": sock.group(1) if sock else ""}


def paced(script: Path, url: str, rate: float, duration: float, auth: str | None, conns: int = 64) -> dict:
    """A wrk run at about ``rate`` req/s in all: each connection waits a Lua ``delay`` after every answer.

    A connection's cycle is its delay plus the answer's latency, so a delay of
    ``conns / rate`` alone falls short of ``rate``; a 2 s calibration run measures
    what is lost (latency, and wrk's truncation of delays to whole milliseconds)
    and the measured run subtracts it. Many connections make the cycle several
    milliseconds long, so that truncation moves the rate by a few percent.
    """
    line = f'wrk.headers["Authorization"] = "{auth}"' if auth else ""
    cycle_ms = conns / rate * 1000.0
    script.write_text(PACED.format(interval=f"{cycle_ms:.3f}", auth_line=line))
    probe = wrk(url, 2, conns, script=script)
    lost_ms = max(0.0, conns / max(probe["rps"], 1.0) * 1000.0 - cycle_ms)  # latency, less truncation
    script.write_text(PACED.format(interval=f"{max(0.0, cycle_ms - lost_ms):.3f}", auth_line=line))
    return wrk(url, duration, conns, script=script)


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.gateway", description=__doc__.split("\n\n")[0])
    ap.add_argument("--duration", type=float, default=5.0, help="seconds per wrk run (default 5)")
    ap.add_argument("--connections", type=int, default=64, help="wrk connections (default 64)")
    ap.add_argument("--only", default="", help="comma-separated subset of: direct,nginx,aiohttp,httpx,floor,meshkit")
    ap.add_argument("--no-paced", action="store_true", help="skip the latency-at-half-peak runs")
    ap.add_argument("--workers", type=int, default=1,
                    help="processes for nginx (worker_processes) and the gateway (GATEWAY_WORKERS), the same "
                         "for both (default 1)")
    args = ap.parse_args(argv)
    for tool in ("wrk", "nginx"):
        if shutil.which(tool) is None and not Path(f"/usr/sbin/{tool}").exists():
            print(f"{tool} not found: install it (apt-get install wrk nginx) to run this benchmark")
            return 1
    nginx_bin = shutil.which("nginx") or "/usr/sbin/nginx"
    only = set(args.only.split(",")) if args.only else {"direct", "nginx", "aiohttp", "httpx", "floor", "meshkit"}
    only.add("direct")
    token, jwks = make_token()
    auth = f"Bearer {token}"
    procs = Procs()
    results: dict[str, dict] = {}
    urls: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="meshkit-bench-gw-") as tmpname:
        tmp = Path(tmpname)
        try:
            up = free_port()
            (tmp / "bench_upstream.py").write_text(UPSTREAM_APP.format(jwks=jwks))
            upstream = granian(procs, tmp, "bench_upstream", up)
            urls["direct"] = f"http://127.0.0.1:{up}/hello"
            results["direct"] = wrk(urls["direct"], args.duration, args.connections, cpu_of=upstream)
            if "nginx" in only:
                port = free_port()
                (tmp / "nginx.conf").write_text(NGINX_CONF.format(tmp=tmp, up=up, port=port, workers=args.workers))
                p = procs.start([nginx_bin, "-p", str(tmp), "-c", str(tmp / "nginx.conf")])
                wait_port(port)
                urls["nginx"] = f"http://127.0.0.1:{port}/hello"
                results["nginx"] = wrk(urls["nginx"], args.duration, args.connections, cpu_of=p)
                # Left running (idle) for the half-peak runs: what the best proxy adds at meshkit's rate.
            for name, src in (("aiohttp", AIOHTTP_PROXY), ("httpx", HTTPX_PROXY)):
                if name not in only:
                    continue
                port = free_port()
                (tmp / f"bench_{name}.py").write_text(src.format(port=up))
                p = granian(procs, tmp, f"bench_{name}", port)
                urls[name] = f"http://127.0.0.1:{port}/hello"
                wrk(urls[name], 1, args.connections)  # warm up pools
                results[name] = wrk(urls[name], args.duration, args.connections, cpu_of=p)
                procs.stop(p)
            if "floor" in only:
                port = free_port()
                (tmp / "bench_floor.py").write_text(FLOOR_PROXY.format(port=up))
                p = procs.start([sys.executable, str(tmp / "bench_floor.py"), str(port)])
                wait_port(port)
                urls["floor"] = f"http://127.0.0.1:{port}/hello"
                results["floor"] = wrk(urls["floor"], args.duration, args.connections, cpu_of=p)
            if "meshkit" in only:
                port, admin = free_port(), free_port()
                (tmp / "routes.yaml").write_text(ROUTES.format(up=up))
                env = {**os.environ, "GATEWAY_PORT": str(port), "GATEWAY_ADMIN_PORT": str(admin),
                       "GATEWAY_ROUTES_FILE": str(tmp / "routes.yaml"), "GATEWAY_JWKS_URL": f"http://127.0.0.1:{up}/jwks.json",
                       "GATEWAY_ISSUER": "bench", "GATEWAY_AUDIENCE": "meshkit", "GATEWAY_ACCESS_LOG": "false",
                       "MESHKIT_REGISTRY_URL": "memory://bench", "MESHKIT_LOG_LEVEL": "warning",
                       "GATEWAY_WORKERS": str(args.workers)}
                p = procs.start([sys.executable, "-m", "meshkit.gateway.main"], env=env)
                wait_port(port)
                urls["meshkit"] = f"http://127.0.0.1:{port}/hello"
                check = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "-H",
                                        f"Authorization: {auth}", urls["meshkit"]], capture_output=True, text=True)
                if check.stdout.strip() != "200":
                    print(f"meshkit gateway answered {check.stdout.strip()} to an authenticated request; aborting")
                    return 1
                wrk(urls["meshkit"], 1, args.connections, auth=auth)
                results["meshkit"] = wrk(urls["meshkit"], args.duration, args.connections, auth=auth, cpu_of=p)
                metrics = subprocess.run(["curl", "-s", f"http://127.0.0.1:{admin}/metrics"], capture_output=True,
                                         text=True).stdout
                results["meshkit"]["metrics_lines"] = sum(1 for line in metrics.splitlines()
                                                          if line.startswith("gateway_requests_total"))
                if not args.no_paced:
                    rate = results["meshkit"]["rps"] / 2
                    for name in ("direct", "nginx", "floor", "meshkit"):
                        if name in urls:
                            results[f"{name}@half"] = paced(tmp / f"paced_{name}.lua", urls[name], rate,
                                                            args.duration, auth if name == "meshkit" else None)
                procs.stop(p)
        finally:
            procs.stop_all()
    report(results, args)
    return 0


def report(results: dict[str, dict], args) -> None:
    best_py = max((results[k]["rps"] for k in ("aiohttp", "httpx") if k in results), default=0.0)
    nginx = results.get("nginx", {}).get("rps", 0.0)
    print(f"wrk: 1 thread, {args.connections} connections, {args.duration:.0f} s per run; trivial Starlette "
          f"upstream on granian (1 worker); nginx and gateway with {args.workers} worker process(es) each")
    print("cpu µs/req: CPU time of the proxy's processes (the upstream's, for direct) per request during the run")
    print(f"{'target':<22}{'req/s':>10}{'p50 ms':>9}{'p99 ms':>9}{'vs nginx':>10}{'vs direct':>11}"
          f"{'cpu µs/req':>12}  errors")
    labels = {"direct": "direct", "nginx": "nginx", "aiohttp": "starlette+aiohttp", "httpx": "starlette+httpx",
              "floor": "floor (bare proxy)",
              "meshkit": "meshkit (auth+rl+met)", "direct@half": "direct @ half peak",
              "nginx@half": "nginx @ half peak", "floor@half": "floor @ half peak",
              "meshkit@half": "meshkit @ half peak"}
    for key, r in results.items():
        vs_nginx = f"{r['rps'] / nginx:.2f}x" if nginx and "@" not in key else ""
        vs_direct = f"{r['rps'] / results['direct']['rps']:.2f}x" if "@" not in key else ""
        errs = (f"{r['non2xx']} non-2xx " if r["non2xx"] else "") + (r["socket_errors"] or "")
        cpu = f"{r['cpu_us']:.1f}" if r.get("cpu_us") else ""
        print(f"{labels.get(key, key):<22}{r['rps']:>10.0f}{r['p50']:>9.2f}{r['p99']:>9.2f}{vs_nginx:>10}"
              f"{vs_direct:>11}{cpu:>12}  {errs or '-'}")
    if "meshkit" in results:
        m = results["meshkit"]
        if nginx:
            print(f"meshkit / nginx: {m['rps'] / nginx:.2f}x (target >= 0.80)")
        if best_py:
            print(f"meshkit / best plain Python proxy: {m['rps'] / best_py:.2f}x (target >= 3)")
        if "floor" in results:
            print(f"meshkit / floor: {m['rps'] / results['floor']['rps']:.2f}x; CPU per request above the floor: "
                  f"{m['cpu_us'] - results['floor']['cpu_us']:.1f} µs (what routing, auth, rate limit, metrics, "
                  f"identity headers and checks cost)")
        if "meshkit@half" in results:
            added = results["meshkit@half"]["p99"] - results["direct@half"]["p99"]
            print(f"p99 added over direct at {results['meshkit@half']['rps']:.0f} req/s (meshkit; direct "
                  f"{results['direct@half']['rps']:.0f}; half of meshkit's peak: {results['meshkit']['rps'] / 2:.0f}): "
                  f"{added:.2f} ms (target <= 1 ms)")
            peers = [f"{name} {results[f'{name}@half']['p99'] - results['direct@half']['p99']:.2f} ms"
                     for name in ("nginx", "floor") if f"{name}@half" in results]
            if peers:
                print(f"p99 added by the peers at the same rate: {', '.join(peers)}")


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
