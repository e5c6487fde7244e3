"""JSON access log, cheap on the hot path.

A request appends one tuple to a list; a background task turns the tuples into
log records (fields as ``extra``, made JSON by :mod:`meshkit.basis.logs`) for the
``meshkit.access`` logger a few times a
second. Formatting and I/O leave the request path, and a burst costs one list
append per request. If the buffer outgrows ``max_buffer`` (the logger cannot
keep up), lines are dropped and counted rather than growing memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

# The same logger as every service's access log; the JSON formatter of meshkit.basis.logs
# turns each record's extra fields into keys of the line.
log = logging.getLogger("meshkit.access")

_FIELDS = ("at", "method", "path", "status", "duration_ms", "route", "request_id", "trace_id", "client",
           "upstream", "cache", "bytes")


class AccessLog:
    """Buffered access log; ``record(...)`` on the hot path, ``start()``/``stop()`` around the server."""

    def __init__(self, service: str, instance: str, interval: float = 0.25, max_buffer: int = 100_000) -> None:
        self.service = service
        self.instance = instance
        self.interval = interval
        self.max_buffer = max_buffer
        self.buffer: list[tuple] = []
        self.dropped = 0
        self._task: asyncio.Task | None = None

    def record(self, method: str, path: str, status: int, seconds: float, route: str, request_id: str,
               trace_id: str, client: str, upstream: str, cache: str, size: int) -> None:
        """One answered request (no formatting here)."""
        if len(self.buffer) < self.max_buffer:
            self.buffer.append((time.time(), method, path, status, round(seconds * 1000, 3), route, request_id,
                                trace_id, client, upstream, cache, size))
        else:
            self.dropped += 1

    def flush(self) -> None:
        """Write what is buffered."""
        if not self.buffer:
            return
        batch, self.buffer = self.buffer, []
        if not log.isEnabledFor(logging.INFO):
            return
        for row in batch:
            d = dict(zip(_FIELDS, row, strict=True))
            d["at"] = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(row[0])) + f".{int(row[0] % 1 * 1000):03d}Z"
            log.info("%s %s %d", row[1], row[2], row[3], extra=d)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            self.flush()

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self.flush()
