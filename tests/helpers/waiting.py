"""Polling for a condition that another task or process makes true."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable


async def until(predicate: Callable[[], object], timeout: float, step: float = 0.005) -> float:
    """Wait until ``predicate()`` is true; return the seconds it took (AssertionError after ``timeout``)."""
    t0 = time.monotonic()
    while not predicate():
        if time.monotonic() - t0 > timeout:
            raise AssertionError(f"condition not met within {timeout}s")
        await asyncio.sleep(step)
    return time.monotonic() - t0


__all__ = ["until"]
