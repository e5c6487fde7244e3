"""Liveness, readiness and metrics endpoints every service gets.

- ``GET /livez``: the process is up and its event loop answers. Nothing else:
  a failing dependency must not get a healthy process restarted.
- ``GET /readyz``: the instance is registered, not draining, and every readiness
  check passes. Checks run concurrently, each under its own timeout; the answer
  lists each check's result (200) or says which failed (503, the JSON error shape
  with ``details.failed`` and ``details.checks``).
- ``GET /metrics``: the service's Prometheus registry as text.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from meshkit.basis.errors import Unavailable
from meshkit.basis.metrics import CONTENT_TYPE
from meshkit.basis.web import json_response

if TYPE_CHECKING:
    from meshkit.basis.service import Service

#: A readiness check: returns when the dependency is usable, raises when it is not.
Check = Callable[[], Awaitable[None]]


class HealthChecks:
    """Named readiness checks, run concurrently with a timeout each."""

    def __init__(self, timeout: float = 2.0) -> None:
        self.timeout = timeout
        self._checks: dict[str, tuple[Check, float]] = {}

    def add(self, name: str, check: Check, timeout: float | None = None) -> None:
        """Add (or replace) the check ``name``."""
        self._checks[name] = (check, self.timeout if timeout is None else timeout)

    def names(self) -> list[str]:
        return list(self._checks)

    async def run(self) -> tuple[bool, dict[str, dict[str, Any]]]:
        """Run every check; ``(all passed, {name: {"ok", "duration_ms", "error"?}})``."""
        names = list(self._checks)
        results = await asyncio.gather(*(self._run_one(n, *self._checks[n]) for n in names))
        report = dict(zip(names, results, strict=True))
        return all(r["ok"] for r in results), report

    @staticmethod
    async def _run_one(name: str, check: Check, timeout: float) -> dict[str, Any]:
        start = time.perf_counter()
        try:
            async with asyncio.timeout(timeout):
                await check()
        except TimeoutError:
            return _result(False, start, f"{name} did not answer within {timeout:g}s")
        except Exception as exc:
            return _result(False, start, f"{type(exc).__name__}: {exc}"[:300])
        return _result(True, start)


def _result(ok: bool, start: float, error: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"ok": ok, "duration_ms": round((time.perf_counter() - start) * 1000.0, 3)}
    if error is not None:
        out["error"] = error
    return out


def ops_routes(service: Service) -> list[Route]:
    """The ``/livez``, ``/readyz`` and ``/metrics`` routes of ``service``."""

    async def livez(request: Request) -> Response:
        return json_response({"status": "alive", "service": service.name})

    async def readyz(request: Request) -> Response:
        if service.draining:
            raise Unavailable("the instance is shutting down", reason="shutting_down")
        if not service.registered:
            raise Unavailable(
                "the instance is not registered yet (starting, or its registry is unreachable)",
                reason="not_ready",
            )
        ok, checks = await service.checks.run()
        if not ok:
            failed = [name for name, r in checks.items() if not r["ok"]]
            raise Unavailable(
                f"not ready: {', '.join(failed)} failed; see details.checks",
                reason="not_ready",
                details={"failed": failed, "checks": checks},
            )
        return json_response({"status": "ready", "checks": checks})

    async def metrics(request: Request) -> Response:
        return Response(service.metrics.render(), media_type=CONTENT_TYPE)

    return [
        Route("/livez", livez, methods=["GET"], name="livez"),
        Route("/readyz", readyz, methods=["GET"], name="readyz"),
        Route("/metrics", metrics, methods=["GET"], name="metrics"),
    ]
