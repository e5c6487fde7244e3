"""What the benchmarks share: a free port, an upstream subprocess's start and stop, a
closed-loop load driver with its latency percentiles, and the event loop to run on."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")
HOST = "127.0.0.1"


def free_port() -> int:
    """A loopback port nothing listens on right now."""
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


async def wait_port(port: int, proc: asyncio.subprocess.Process, timeout: float = 15.0) -> None:
    """Return once ``port`` accepts connections; raise if ``proc`` exits first or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.returncode is not None:
            raise RuntimeError(f"upstream exited with code {proc.returncode} before listening")
        try:
            _r, w = await asyncio.open_connection(HOST, port)
            w.close()
            return
        except OSError:
            await asyncio.sleep(0.05)
    raise RuntimeError(f"upstream did not listen on port {port} within {timeout}s")


async def stop(proc: asyncio.subprocess.Process, timeout: float = 15.0) -> None:
    """Terminate ``proc`` and wait for it; kill it if it has not exited after ``timeout`` seconds."""
    if proc.returncode is None:
        proc.terminate()
        try:
            await asyncio.wait_for(proc.wait(), timeout)
        except TimeoutError:
            proc.kill()
            await proc.wait()


async def load(call: Callable[[], Awaitable[None]], seconds: float, concurrency: int) -> list[float]:
    """Run ``call`` from ``concurrency`` workers for ``seconds``; latencies in seconds."""
    latencies: list[float] = []
    clock = time.perf_counter
    end = clock() + seconds

    async def worker() -> None:
        record = latencies.append
        while True:
            t0 = clock()
            if t0 >= end:
                return
            await call()
            record(clock() - t0)

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return latencies


def percentile(sorted_values: list[float], p: float) -> float:
    """The ``p`` quantile (0..1) of already sorted values (nearest rank); NaN when there are none."""
    if not sorted_values:
        return float("nan")
    return sorted_values[min(len(sorted_values) - 1, int(p * len(sorted_values)))]


def run(main: Coroutine[Any, Any, T]) -> T:
    """Run ``main`` on uvloop when it is installed (as the services do), else on asyncio's loop."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    return uvloop.run(main)


__all__ = ["HOST", "free_port", "load", "percentile", "run", "stop", "wait_port"]
