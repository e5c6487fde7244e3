"""Startup: from launching ``meshkit up`` to its ``ready`` line, and where the time goes.

Side by side, interleaved, 3 runs each (fresh data dir every run, so migrations run):

- ``meshkit up``    — ``python -m meshkit.cli.main up`` with the default system (NATS
  and the services of ``meshkit/cli/system.yaml``, printed in the report; fixed ports
  moved to free ones): launch → the
  ``ready`` line (every instance registered and answering ``/readyz`` with 200);
- ``by hand``       — the peer: the same processes (``python -m <module>``, same
  settings) started directly against a NATS that is already running: launch → all
  ``/readyz`` answer 200. What the services cost without ``meshkit up`` around them.

Then the phases of the last ``meshkit up`` run (from its output, as it arrives)
and the imports of one catalog run under ``python -X importtime`` (until it is
ready, so the lazy imports at start count too) grouped by top-level package:
importing is most of a service's start. Bounded: about 30-45 s.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from meshkit.basis.natsd import EmbeddedNats, free_port
from meshkit.cli.launch import child_env
from meshkit.cli.probe import http_status
from meshkit.cli.system import load_system

RUNS = 3
READY_TIMEOUT = 30.0
CATALOG = "meshkit.services.catalog.main"
TARGET = 3.0  # seconds, on 2 cores


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MESHKIT_", "CATALOG_"))}
    env.update(extra)
    return env


def _moved_ports() -> dict[str, str]:
    """Fixed ports of the system (the gateway's 8080, admin 9080) moved to free ones for the runs."""
    moved = {}
    for svc in load_system().services:
        if svc.port is not None:
            moved[f"{svc.prefix}PORT"] = str(free_port())
            moved[f"{svc.prefix}ADMIN_PORT"] = str(free_port())
    return moved


def _system_label() -> str:
    return " + ".join(f"{s.name} ×{s.instances}" if s.instances > 1 else s.name for s in load_system().services)


async def _run_up() -> tuple[float, dict[str, float]]:
    """One ``meshkit up``: seconds to ``ready`` and the time of each phase seen in its output."""
    last_iid = load_system().services[-1].instance_ids()[-1]
    with tempfile.TemporaryDirectory(prefix="meshkit-startup-") as tmp:
        t0 = time.perf_counter()
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "meshkit.cli.main", "up", "--nats-port", str(free_port()), "--no-color",
            "--raw-logs", cwd=tmp, env=_env(**_moved_ports()),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )
        phases: dict[str, float] = {}
        patterns = {
            "all services launched": re.compile(rf"^meshkit\s+│ {last_iid} starting"),
            "nats ok": re.compile(r"^meshkit\s+│ nats ok"),
            "catalog-1 first log line (imports done, migrating)": re.compile(r"^catalog/1\s+│ "),
            "catalog-1 /readyz 200": re.compile(r"^meshkit\s+│ catalog-1 ok at"),
            "ready line": re.compile(r"^meshkit\s+│ ready in"),
        }
        try:
            assert proc.stdout is not None
            deadline = t0 + READY_TIMEOUT
            while "ready line" not in phases:
                raw = await asyncio.wait_for(proc.stdout.readline(), max(0.1, deadline - time.perf_counter()))
                if not raw:
                    raise RuntimeError(f"meshkit up exited with {await proc.wait()} before ready")
                line, now = raw.decode(), time.perf_counter() - t0
                for name, pattern in patterns.items():
                    if name not in phases and pattern.search(line):
                        phases[name] = now
            return phases["ready line"], phases
        finally:
            if proc.returncode is None:
                proc.send_signal(signal.SIGTERM)
            await proc.communicate()


async def _run_by_hand(nats_url: str) -> float:
    """Every instance of the system started directly (same modules and settings, NATS already
    running): seconds until all answer ``/readyz`` with 200."""
    with tempfile.TemporaryDirectory(prefix="meshkit-startup-") as tmp:
        log = open(Path(tmp) / "services.log", "wb")  # noqa: ASYNC230 - closed below
        launches = []
        for svc in load_system().services:
            for iid in svc.instance_ids():
                port = free_port()
                env = child_env(svc.service_env(), nats_url=nats_url, data_dir=Path(tmp), instance_id=iid,
                                environ=_env(**{**_moved_ports(), f"{svc.prefix}PORT": str(port)}))
                launches.append(([sys.executable, "-m", svc.module], env, port))
        t0 = time.perf_counter()
        procs = [
            subprocess.Popen(argv, cwd=tmp, env=env, stdout=log, stderr=subprocess.STDOUT)  # noqa: ASYNC220
            for argv, env, _ in launches
        ]
        try:
            pending = {port for _, _, port in launches}
            while pending:
                if time.perf_counter() - t0 > READY_TIMEOUT or any(p.poll() is not None for p in procs):
                    tail = (Path(tmp) / "services.log").read_text(errors="replace")[-2000:]
                    raise RuntimeError(f"services started by hand did not become ready; their log ends:\n{tail}")
                for port in list(pending):
                    # A request before the port is even open would only cost the starting service CPU.
                    if await _accepts(port) and await http_status("127.0.0.1", port, "/readyz", timeout=0.5) == 200:
                        pending.discard(port)
                if pending:
                    await asyncio.sleep(0.05)
            return time.perf_counter() - t0
        finally:
            for p in procs:
                p.send_signal(signal.SIGTERM)
            for p in procs:
                try:
                    p.wait(10)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
            log.close()


async def _accepts(port: int) -> bool:
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 0.5)
    except (OSError, TimeoutError):
        return False
    writer.close()
    return True


async def _measure() -> tuple[list[float], list[float], dict[str, float], tuple]:
    up_times, hand_times, phases = [], [], {}
    with tempfile.TemporaryDirectory(prefix="meshkit-startup-nats-") as tmp:
        nats = EmbeddedNats(port=0, data_dir=tmp, log_file=Path(tmp) / "nats.log")
        await nats.start()
        try:
            for _ in range(RUNS):
                took, phases = await _run_up()
                up_times.append(took)
                hand_times.append(await _run_by_hand(nats.url))
            imports = await import_breakdown(nats.url)
        finally:
            await nats.stop()
    return up_times, hand_times, phases, imports


def _seconds_of(argv: list[str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(argv, check=True, env=_env())
    return time.perf_counter() - t0


def _group_importtime(stderr: str) -> tuple[float, list[tuple[str, float]]]:
    """``-X importtime`` lines: total self time (ms) and self time per top-level package."""
    per_package: dict[str, float] = {}
    for line in stderr.splitlines():
        m = re.match(r"import time:\s+(\d+) \|\s+(\d+) \|\s*(\S+)", line)
        if not m:
            continue
        name = m[3]
        top = name.split(".")[0]
        if top == "meshkit" and name.count(".") >= 2:
            top = ".".join(name.split(".")[:3])  # meshkit.basis.x / meshkit.services.catalog
        per_package[top] = per_package.get(top, 0.0) + int(m[1]) / 1000
    return sum(per_package.values()), sorted(per_package.items(), key=lambda kv: -kv[1])


async def import_breakdown(nats_url: str) -> tuple[float, float, list[tuple[str, float]]]:
    """One catalog run under ``-X importtime`` until ready: every import it makes, lazy ones
    (registry, NATS client, HTTP server) included. Returns seconds to ready, total import ms
    and ms per package."""
    with tempfile.TemporaryDirectory(prefix="meshkit-startup-") as tmp:
        port = free_port()
        t0 = time.perf_counter()
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-X", "importtime", "-m", CATALOG, cwd=tmp,
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
            env=_env(MESHKIT_NATS_URL=nats_url, MESHKIT_DATA_DIR=tmp, MESHKIT_INSTANCE_ID="importtime-1",
                     CATALOG_PORT=str(port)),
        )
        collected = asyncio.create_task(proc.stderr.read())  # type: ignore[union-attr]
        took = READY_TIMEOUT
        while time.perf_counter() - t0 < READY_TIMEOUT and proc.returncode is None:
            if await http_status("127.0.0.1", port, "/readyz", timeout=0.5) == 200:
                took = time.perf_counter() - t0
                break
            await asyncio.sleep(0.02)
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
        await proc.wait()
        total, packages = _group_importtime((await collected).decode(errors="replace"))
        return took, total, packages


def main(argv: list[str]) -> int:
    started = time.perf_counter()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    up_times, hand_times, phases, (alone, total, packages) = asyncio.run(_measure())
    up_min, up_med = min(up_times), statistics.median(up_times)
    hand_min, hand_med = min(hand_times), statistics.median(hand_times)
    print(f"startup to ready, seconds ({RUNS} runs each, interleaved; {os.cpu_count()} cores, "
          f"load average {load:.1f} at start; target ≤ {TARGET:.0f} s)")
    print(f"system: {_system_label()}")
    print(f"{'case':<34} {'min':>6} {'median':>7} {'runs':>20} {'median vs by hand':>18}")
    print(f"{'meshkit up (starts nats too)':<34} {up_min:>6.2f} {up_med:>7.2f} "
          f"{' '.join(f'{t:.2f}' for t in up_times):>20} {f'{up_med / hand_med:.2f}×':>18}")
    print(f"{'by hand (nats already running)':<34} {hand_min:>6.2f} {hand_med:>7.2f} "
          f"{' '.join(f'{t:.2f}' for t in hand_times):>20} {'1.00×':>18}")
    print(f"target {'met' if up_med <= TARGET else 'MISSED'}: median {up_med:.2f} s vs {TARGET:.1f} s")

    print("\nphases of the last meshkit up run (seconds since launch)")
    for name, at in sorted(phases.items(), key=lambda kv: kv[1]):
        print(f"  {at:6.2f}  {name}")

    bare = min(_seconds_of([sys.executable, "-c", "pass"]) for _ in range(3))
    with_import = min(_seconds_of([sys.executable, "-c", f"import {CATALOG}"]) for _ in range(2))
    print(f"\none process: python -c pass {bare:.3f} s; python -c 'import {CATALOG}' {with_import:.3f} s; "
          f"one catalog alone under -X importtime: ready after {alone:.2f} s")
    print(f"imports of that catalog run (lazy ones at start included): {total:.0f} ms of self time; "
          "by top-level package:")
    print(f"  {'package':<32} {'ms':>7} {'share':>6}")
    for name, ms in packages[:12]:
        print(f"  {name:<32} {ms:>7.1f} {ms / total:>6.0%}")
    print(f"(ran {time.perf_counter() - started:.1f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
