"""Live per-instance load: calls in flight and an EWMA of latency.

Balancers read ``in_flight`` to prefer the less loaded instance; the EWMA is
for snapshots (and for latency-aware policies). Updating is two attribute
writes per call: no locks are needed on one event loop.
"""

from __future__ import annotations

from collections.abc import Iterable


class InstanceStats:
    """Load of one instance as seen by this process."""

    __slots__ = ("calls", "ewma", "in_flight")

    #: Weight of the newest sample in the latency average.
    ALPHA = 0.2

    def __init__(self) -> None:
        self.in_flight = 0
        self.calls = 0
        self.ewma = 0.0  # seconds

    def begin(self) -> None:
        """A call to this instance starts."""
        self.in_flight += 1

    def end(self, latency: float) -> None:
        """The call that :meth:`begin` counted is over, after ``latency`` seconds."""
        self.in_flight -= 1
        self.calls += 1
        self.ewma = latency if self.calls == 1 else self.ewma + self.ALPHA * (latency - self.ewma)

    def snapshot(self) -> dict:
        """In-flight count, calls and latency average (ms), for admin/debug pages."""
        return {"in_flight": self.in_flight, "calls": self.calls, "ewma_ms": round(self.ewma * 1000, 3)}


class StatsTable:
    """:class:`InstanceStats` keyed by instance key, created on first use."""

    __slots__ = ("_by_key",)

    def __init__(self) -> None:
        self._by_key: dict[str, InstanceStats] = {}

    def get(self, key: str) -> InstanceStats:
        """The stats of ``key`` (new and empty the first time)."""
        st = self._by_key.get(key)
        if st is None:
            st = self._by_key[key] = InstanceStats()
        return st

    def retain(self, keys: Iterable[str]) -> None:
        """Forget instances not in ``keys`` (they left the registry)."""
        keep = set(keys)
        for key in list(self._by_key):
            if key not in keep:
                del self._by_key[key]

    def __contains__(self, key: str) -> bool:
        return key in self._by_key

    def __len__(self) -> int:
        return len(self._by_key)
