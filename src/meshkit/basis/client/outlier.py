"""Passive outlier ejection, one detector per service.

An instance that fails ``consecutive_failures`` calls in a row is ejected: the
balancer skips it for ``base_ejection * n`` seconds, where ``n`` counts its
ejections (capped at ``max_ejection``), then it comes back by itself. At most
``max_ejected_percent`` of the service's instances are ejected at once, so a
service-wide outage does not eject everyone (the breakers and the retry budget
deal with that). Unlike a breaker, ejection needs no traffic ratio: one
instance that is down among healthy ones is caught after a few calls.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

from meshkit.basis.client.window import Clock


class _State:
    __slots__ = ("ejections", "failures", "returned_at", "until")

    def __init__(self) -> None:
        self.failures = 0
        self.ejections = 0
        self.until = 0.0
        self.returned_at = 0.0


class OutlierDetector:
    """Consecutive-failure ejection over one service's instances, keyed by instance key."""

    __slots__ = ("_clock", "_ejected", "_population", "_states", "base_ejection",
                 "consecutive_failures", "max_ejected_percent", "max_ejection")

    def __init__(
        self,
        *,
        consecutive_failures: int = 5,
        base_ejection: float = 30.0,
        max_ejection: float = 300.0,
        max_ejected_percent: float = 50.0,
        clock: Clock = time.monotonic,
    ) -> None:
        self.consecutive_failures = max(1, consecutive_failures)
        self.base_ejection = base_ejection
        self.max_ejection = max_ejection
        self.max_ejected_percent = max_ejected_percent
        self._clock = clock
        self._states: dict[str, _State] = {}
        self._ejected: dict[str, _State] = {}  # the ejected subset, for the fast path
        self._population = 0

    def set_population(self, keys: Iterable[str]) -> None:
        """The service's current instances; forgets instances that are gone."""
        keys = set(keys)
        self._population = len(keys)
        for key in list(self._states):
            if key not in keys:
                del self._states[key]
                self._ejected.pop(key, None)

    def record(self, key: str, success: bool) -> bool:
        """Count one call's outcome; returns ``True`` when this failure ejected ``key``."""
        st = self._states.get(key)
        if st is None:
            st = self._states[key] = _State()
        if success:
            st.failures = 0
            return False
        st.failures += 1
        if st.failures < self.consecutive_failures or key in self._ejected:
            return False
        self._sweep()
        if (len(self._ejected) + 1) * 100 > self.max_ejected_percent * max(self._population, 1):
            return False
        now = self._clock()
        # Forgive old history: an instance healthy for a long while starts over.
        if st.returned_at and now - st.returned_at > self.max_ejection:
            st.ejections = 0
        st.ejections += 1
        st.until = now + min(self.base_ejection * st.ejections, self.max_ejection)
        st.failures = 0
        self._ejected[key] = st
        return True

    def is_ejected(self, key: str) -> bool:
        """Is ``key`` ejected right now? O(1), and free when nothing is ejected."""
        if not self._ejected:
            return False
        st = self._ejected.get(key)
        if st is None:
            return False
        now = self._clock()
        if now < st.until:
            return True
        del self._ejected[key]
        st.returned_at = now
        return False

    def ejected(self) -> list[str]:
        """Keys ejected now."""
        self._sweep()
        return sorted(self._ejected)

    def _sweep(self) -> None:
        if not self._ejected:
            return
        now = self._clock()
        for key, st in list(self._ejected.items()):
            if now >= st.until:
                del self._ejected[key]
                st.returned_at = now
