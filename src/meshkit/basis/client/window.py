"""A rolling time window of two counters, in fixed buckets.

Used by the circuit breaker (calls, failures) and the retry budget (calls,
retries), both on every call, so adding is the cheap side: one clock read, one
comparison and two increments into the current bucket. The bucket is closed into
a ring (and buckets that left the window are subtracted from running sums) only
when time has moved past its end, and reading the totals is O(1) too.
"""

from __future__ import annotations

import time
from collections.abc import Callable

Clock = Callable[[], float]


class RollingCounts:
    """Two counters (``a``, ``b``) summed over the last ``window`` seconds.

    The window is cut into ``buckets`` slots (the current one included); a slot
    older than the window is dropped whole, so the sums are exact to within one
    bucket width. A clock that steps backwards keeps counting into the current slot.
    """

    __slots__ = ("_a", "_b", "_clock", "_cur_a", "_cur_b", "_epoch", "_epochs", "_n", "_next_at", "_sum_a",
                 "_sum_b", "_width")

    def __init__(self, window: float = 10.0, buckets: int = 10, clock: Clock = time.monotonic) -> None:
        if window <= 0 or buckets <= 0:
            raise ValueError("window and buckets must be positive")
        self._n = buckets
        self._width = window / buckets
        self._clock = clock
        # Closed slots: epoch (-1 when empty) and counts; their running sums.
        self._epochs = [-1] * buckets
        self._a = [0] * buckets
        self._b = [0] * buckets
        self._sum_a = 0
        self._sum_b = 0
        # The open slot.
        self._epoch = -1
        self._cur_a = 0
        self._cur_b = 0
        self._next_at = float("-inf")  # when the open slot ends: the first add opens one

    def add(self, a: int = 0, b: int = 0) -> None:
        """Count ``a`` and ``b`` now."""
        if self._clock() >= self._next_at:
            self._roll()
        self._cur_a += a
        self._cur_b += b

    def totals(self) -> tuple[int, int]:
        """``(a, b)`` summed over the window ending now."""
        if self._clock() >= self._next_at:
            self._roll()
        return self._sum_a + self._cur_a, self._sum_b + self._cur_b

    def _roll(self) -> None:
        # Close the open slot, drop every closed slot that left the window, open the slot of now.
        epoch = int(self._clock() / self._width)
        n = self._n
        if self._epoch >= 0 and (self._cur_a or self._cur_b):
            i = self._epoch % n
            self._sum_a += self._cur_a - self._a[i]
            self._sum_b += self._cur_b - self._b[i]
            self._a[i], self._b[i], self._epochs[i] = self._cur_a, self._cur_b, self._epoch
        oldest = epoch - n + 1
        for j in range(n):
            e = self._epochs[j]
            if e != -1 and (e < oldest or e >= epoch):  # left the window (or is the slot of now)
                self._sum_a -= self._a[j]
                self._sum_b -= self._b[j]
                self._a[j] = self._b[j] = 0
                self._epochs[j] = -1
        self._epoch = epoch
        self._cur_a = self._cur_b = 0
        self._next_at = (epoch + 1) * self._width

    def clear(self) -> None:
        """Forget everything."""
        for j in range(self._n):
            self._epochs[j] = -1
            self._a[j] = self._b[j] = 0
        self._sum_a = self._sum_b = 0
        self._epoch = -1
        self._cur_a = self._cur_b = 0
        self._next_at = float("-inf")
