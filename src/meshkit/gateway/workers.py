"""Extra gateway worker processes sharing the public port (SO_REUSEPORT).

One Python process is one core. With ``GATEWAY_WORKERS`` > 1 (0 = one per core)
the gateway that was started (worker 0) starts the others on its own port, each
a whole gateway (routes, registry view, breakers) without the admin API and
without registering; the kernel spreads new connections across them. Worker 0
restarts a worker that dies and stops them all, in parallel, when it stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import subprocess
import sys
import time

from meshkit.basis.process import die_with_parent

log = logging.getLogger("meshkit.gateway")


def worker_count(setting: int) -> int:
    """How many processes serve the port: ``setting``, or one per core when it is 0."""
    return setting if setting > 0 else (os.cpu_count() or 1)


class Workers:
    """Worker 0's view of workers 1..n-1."""

    def __init__(self, count: int, port: int) -> None:
        self.count, self.port = count, port
        self.procs: dict[int, subprocess.Popen[bytes]] = {}
        self._watch: asyncio.Task | None = None
        self._stopping = False

    def _spawn(self, index: int) -> None:
        env = {**os.environ, "GATEWAY_WORKER_INDEX": str(index), "GATEWAY_WORKERS": str(self.count),
               "GATEWAY_PORT": str(self.port)}
        self.procs[index] = subprocess.Popen(
            [sys.executable, "-m", "meshkit.gateway.main"], env=env, stdin=subprocess.DEVNULL,
            preexec_fn=die_with_parent)

    async def start(self) -> None:
        for index in range(1, self.count):
            self._spawn(index)
        log.info("gateway: %d worker process(es) started on port %d", self.count - 1, self.port)
        self._watch = asyncio.get_running_loop().create_task(self._keep_alive())

    async def _keep_alive(self) -> None:
        while not self._stopping:
            await asyncio.sleep(1.0)
            for index, proc in list(self.procs.items()):
                if proc.poll() is not None and not self._stopping:
                    log.warning("gateway worker %d exited with %s; restarting it", index, proc.returncode)
                    self._spawn(index)

    async def stop(self, timeout: float) -> None:
        """SIGTERM every worker (each drains), SIGKILL what is left after ``timeout``."""
        self._stopping = True
        if self._watch is not None:
            self._watch.cancel()
        for proc in self.procs.values():
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while any(p.poll() is None for p in self.procs.values()) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()
