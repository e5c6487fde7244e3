"""How fast work arrives, to choose between answering each piece at once and batching them.

The outbox relay and the batch consumers wait a little (their ``linger``) between
rounds so that a steady stream is read, published and applied in batches: one
database round and one transaction for many events instead of one each. At a light
load that wait is pure latency — an event committed 5 ms after the last one would
sit for up to the rest of the linger. :class:`Pace` tells the two apart: it keeps
an exponentially decaying count of arrivals, whose level over its memory is the
recent rate, and a loop lingers only while that rate is above its eager rate.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable


class Pace:
    """The recent arrival rate, averaged over about ``memory`` seconds; ``busy`` above ``eager_rate`` a second."""

    __slots__ = ("_at", "_clock", "_level", "eager_rate", "memory")

    def __init__(self, eager_rate: float, *, memory: float = 0.1,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if eager_rate < 0 or memory <= 0:
            raise ValueError("eager_rate must be >= 0 and memory > 0")
        self.eager_rate = eager_rate
        self.memory = memory
        self._clock = clock
        self._level = 0.0  # arrivals, each weighted by exp(-age / memory)
        self._at = clock()

    def add(self, n: int) -> None:
        """Count ``n`` arrivals now."""
        now = self._clock()
        self._level = self._level * math.exp(-(now - self._at) / self.memory) + n
        self._at = now

    def rate(self) -> float:
        """Arrivals a second, recently (a steady rate ``r`` reads as ``r`` after a few ``memory``)."""
        return self._level * math.exp(-(self._clock() - self._at) / self.memory) / self.memory

    def busy(self) -> bool:
        """Whether arrivals come faster than ``eager_rate``: worth batching rather than going at once."""
        return self.rate() > self.eager_rate


__all__ = ["Pace"]
