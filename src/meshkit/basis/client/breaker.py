"""Circuit breaker, one per upstream instance.

States::

    closed ──(failure ratio > threshold over the window, with enough calls)──► open
    open ──(cool-down elapsed)──► half_open
    half_open ──(a probe succeeds)──► closed
    half_open ──(a probe fails)──► open, with a longer cool-down (doubles, capped)

Use::

    if breaker.allow():          # consumes a probe slot when half-open
        ok = await call()
        breaker.record(ok)

:meth:`available` is the side-effect-free check a load balancer uses to skip an
instance. The clock is injectable so tests can move time by hand.
"""

from __future__ import annotations

import time

from meshkit.basis.client.window import Clock, RollingCounts

CLOSED = "closed"
OPEN = "open"
HALF_OPEN = "half_open"


class CircuitBreaker:
    """Failure-ratio circuit breaker over a rolling time window.

    - ``failure_ratio``: open when failures / calls exceeds this (0..1);
    - ``min_calls``: ...but only once the window holds at least this many calls;
    - ``window`` / ``buckets``: the rolling window (seconds) and its resolution;
    - ``open_for``: first cool-down (seconds); each re-open doubles it up to ``max_open_for``;
    - ``half_open_probes``: calls let through at once while half-open.
    """

    __slots__ = (
        "_clock", "_cooldown", "_counts", "_probes", "_state", "_until", "failure_ratio",
        "half_open_probes", "max_open_for", "min_calls", "open_for",
    )

    def __init__(
        self,
        *,
        failure_ratio: float = 0.5,
        min_calls: int = 20,
        window: float = 10.0,
        buckets: int = 10,
        open_for: float = 5.0,
        max_open_for: float = 60.0,
        half_open_probes: int = 1,
        clock: Clock = time.monotonic,
    ) -> None:
        self.failure_ratio = failure_ratio
        self.min_calls = min_calls
        self.open_for = open_for
        self.max_open_for = max_open_for
        self.half_open_probes = max(1, half_open_probes)
        self._clock = clock
        self._counts = RollingCounts(window, buckets, clock)  # (calls, failures)
        self._state = CLOSED
        self._until = 0.0  # open: end of cool-down; half-open: when stale probes are forgotten
        self._cooldown = open_for
        self._probes = 0

    @property
    def state(self) -> str:
        """``"closed"``, ``"open"`` or ``"half_open"`` (an open breaker whose cool-down is over)."""
        if self._state == OPEN and self._clock() >= self._until:
            self._to_half_open()
        return self._state

    def available(self) -> bool:
        """Would :meth:`allow` let a call through now? (No side effect on probes.)"""
        if self._state == CLOSED:  # the hot path
            return True
        state = self.state
        if state == HALF_OPEN:
            return self._probes < self.half_open_probes or self._clock() >= self._until
        return False

    def allow(self) -> bool:
        """May a call go to this instance now? Half-open: takes one probe slot."""
        if self._state == CLOSED:
            return True
        state = self.state
        if state == OPEN:
            return False
        now = self._clock()
        if self._probes >= self.half_open_probes:
            if now < self._until:
                return False
            # Probes that never reported (cancelled callers) must not wedge the breaker.
            self._probes = 0
        self._probes += 1
        self._until = now + self._cooldown
        return True

    def record(self, success: bool) -> None:
        """Report the outcome of a call that :meth:`allow` let through."""
        state = self._state
        if state == CLOSED:
            if success:
                self._counts.add(1, 0)
                return
            self._counts.add(1, 1)
            calls, failures = self._counts.totals()
            if calls >= self.min_calls and failures / calls > self.failure_ratio:
                self._trip(self.open_for)
            return
        if state == OPEN:
            # A call that started before the breaker opened; it tells us nothing new.
            return
        if success:
            self._close()
        else:
            self._trip(min(self._cooldown * 2, self.max_open_for))

    def reset(self) -> None:
        """Back to closed with an empty window."""
        self._close()

    def snapshot(self) -> dict:
        """State and window counts, for admin/debug pages."""
        calls, failures = self._counts.totals()
        state = self.state
        out = {"state": state, "calls": calls, "failures": failures}
        if state == OPEN:
            out["retry_in"] = round(max(0.0, self._until - self._clock()), 3)
        return out

    def _trip(self, cooldown: float) -> None:
        self._state = OPEN
        self._cooldown = cooldown
        self._until = self._clock() + cooldown
        self._probes = 0

    def _to_half_open(self) -> None:
        self._state = HALF_OPEN
        self._probes = 0
        self._until = self._clock() + self._cooldown

    def _close(self) -> None:
        self._state = CLOSED
        self._cooldown = self.open_for
        self._probes = 0
        self._counts.clear()
