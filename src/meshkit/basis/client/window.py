"""A rolling time window of two counters, in fixed buckets.

Used by the circuit breaker (calls, failures) and the retry budget (calls,
retries). Adding is O(1); reading the totals is O(1) too, because running sums
are kept and expired buckets are subtracted as time moves on.
"""

from __future__ import annotations

import time
from collections.abc import Callable

Clock = Callable[[], float]


class RollingCounts:
    """Two counters (``a``, ``b``) summed over the last ``window`` seconds.

    The window is cut into ``buckets`` slots; a slot older than the window is
    dropped whole, so the sums are exact to within one bucket width.
    """

    __slots__ = ("_a", "_b", "_clock", "_epochs", "_n", "_sum_a", "_sum_b", "_width")

    def __init__(self, window: float = 10.0, buckets: int = 10, clock: Clock = time.monotonic) -> None:
        if window <= 0 or buckets <= 0:
            raise ValueError("window and buckets must be positive")
        self._n = buckets
        self._width = window / buckets
        self._clock = clock
        self._epochs = [-1] * buckets
        self._a = [0] * buckets
        self._b = [0] * buckets
        self._sum_a = 0
        self._sum_b = 0

    def _slot(self) -> int:
        epoch = int(self._clock() / self._width)
        i = epoch % self._n
        if self._epochs[i] != epoch:
            self._expire(epoch)
        return i

    def _expire(self, epoch: int) -> None:
        # Drop every slot that has left the window (not only the one reused now),
        # so the running sums never include stale counts.
        oldest = epoch - self._n + 1
        for j in range(self._n):
            e = self._epochs[j]
            if e != -1 and e < oldest:
                self._sum_a -= self._a[j]
                self._sum_b -= self._b[j]
                self._a[j] = self._b[j] = 0
                self._epochs[j] = -1
        i = epoch % self._n
        if self._epochs[i] != epoch:
            self._sum_a -= self._a[i]
            self._sum_b -= self._b[i]
            self._a[i] = self._b[i] = 0
            self._epochs[i] = epoch

    def add(self, a: int = 0, b: int = 0) -> None:
        """Count ``a`` and ``b`` now."""
        i = self._slot()
        self._a[i] += a
        self._b[i] += b
        self._sum_a += a
        self._sum_b += b

    def totals(self) -> tuple[int, int]:
        """``(a, b)`` summed over the window ending now."""
        self._slot()
        return self._sum_a, self._sum_b

    def clear(self) -> None:
        """Forget everything."""
        for j in range(self._n):
            self._epochs[j] = -1
            self._a[j] = self._b[j] = 0
        self._sum_a = self._sum_b = 0
