"""Retry pacing: exponential backoff with full jitter, and a retry budget.

Backoff spreads retries in time so a burst of failing callers does not come
back in lock-step. The budget bounds retries to a fraction of calls so that,
when an upstream is truly down, retries cannot multiply the load on it (a
"retry storm"); a small per-second allowance keeps retries possible at low
traffic.
"""

from __future__ import annotations

import random
import time

from meshkit.basis.client.window import Clock, RollingCounts

#: Methods that may be sent twice without changing the outcome (RFC 9110 §9.2.2).
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})


class Backoff:
    """Exponential backoff with full jitter, capped.

    ``delay(attempt)`` for ``attempt`` = 0, 1, 2... is uniform in
    ``[0, min(cap, base * factor ** attempt)]``.
    """

    __slots__ = ("_random", "base", "cap", "factor")

    def __init__(self, base: float = 0.025, cap: float = 1.0, factor: float = 2.0,
                 rng: random.Random | None = None) -> None:
        if base < 0 or cap < 0 or factor < 1:
            raise ValueError("backoff needs base >= 0, cap >= 0, factor >= 1")
        self.base = base
        self.cap = cap
        self.factor = factor
        self._random = (rng or random).random

    def ceiling(self, attempt: int) -> float:
        """The largest delay ``delay(attempt)`` can return."""
        # min() before the power would overflow for huge attempts; cap the exponent.
        return min(self.cap, self.base * self.factor ** min(attempt, 64))

    def delay(self, attempt: int) -> float:
        """Seconds to wait before retry number ``attempt`` (0-based)."""
        return self._random() * self.ceiling(attempt)


class RetryBudget:
    """Allow retries while they stay under ``ratio`` of calls in a sliding window.

    Every original call is counted with :meth:`record_call`; before each retry,
    :meth:`try_retry` asks for permission (and counts the retry when granted).
    A retry is allowed when ``retries + 1 <= ratio * calls + min_per_second * window``.
    """

    __slots__ = ("_counts", "_reserve", "min_per_second", "ratio", "window")

    def __init__(self, ratio: float = 0.2, *, min_per_second: float = 3.0, window: float = 10.0,
                 clock: Clock = time.monotonic) -> None:
        if ratio < 0 or min_per_second < 0:
            raise ValueError("retry budget ratio and min_per_second must be >= 0")
        self.ratio = ratio
        self.min_per_second = min_per_second
        self.window = window
        self._reserve = min_per_second * window
        self._counts = RollingCounts(window, 10, clock)  # (calls, retries)

    def record_call(self) -> None:
        """Count one original (non-retry) call."""
        self._counts.add(1, 0)

    def try_retry(self) -> bool:
        """Take one retry from the budget; ``False`` when it is spent."""
        calls, retries = self._counts.totals()
        if retries + 1 > self.ratio * calls + self._reserve:
            return False
        self._counts.add(0, 1)
        return True

    def snapshot(self) -> dict:
        """Calls and retries in the window, for admin/debug pages."""
        calls, retries = self._counts.totals()
        return {"calls": calls, "retries": retries, "allowed": int(self.ratio * calls + self._reserve)}
