"""Login throttling: growing delays, then a lockout window — per account and per client address.

Each key (``account:<email>`` or ``ip:<address>``) counts failed logins inside
a sliding ``window``. The first ``free`` failures cost nothing; after that the
next attempt must wait ``base_delay * 2**(extra failures - 1)`` seconds (capped
at ``max_delay``); at ``lockout_after`` failures the key is locked for
``lockout`` seconds. A success clears the account's key (not the address's:
one good password must not launder a spraying address).

Unknown accounts are throttled exactly like real ones, so throttling reveals
nothing about which addresses exist. State is in memory, per SSO instance:
with several instances an attacker gets at most N times the attempts.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class ThrottleRule:
    """Limits for one kind of key."""

    free: int = 3
    base_delay: float = 1.0
    max_delay: float = 60.0
    lockout_after: int = 10
    lockout: float = 900.0
    window: float = 900.0


@dataclass(slots=True)
class _State:
    failures: list[float] = field(default_factory=list)
    locked_until: float = 0.0
    #: Attempts begun and not yet ended, and when the last one began.
    pending: int = 0
    began: float = 0.0


class Throttle:
    """Failed-attempt bookkeeping; :meth:`wait` says how long a key must still wait (0 = may try)."""

    def __init__(self, rule: ThrottleRule, *, clock: Callable[[], float] = time.monotonic,
                 max_keys: int = 100_000) -> None:
        self.rule = rule
        self._clock = clock
        self._keys: dict[str, _State] = {}
        self.max_keys = max_keys

    def wait(self, key: str) -> float:
        """Seconds before ``key`` may try again (0.0 when it may try now)."""
        state = self._keys.get(key)
        if state is None:
            return 0.0
        now = self._clock()
        self._expire(state, now)
        if state.locked_until > now:
            return state.locked_until - now
        # An attempt in flight counts as a failure until it ends: concurrent guesses see each other
        # (checked before the slow password hash, they all passed as if none had been made).
        counted = len(state.failures) + state.pending
        extra = counted - self.rule.free
        if extra <= 0:
            return 0.0
        if counted >= self.rule.lockout_after:
            return max(self.rule.base_delay, 0.001)  # the attempts in flight may lock the key
        delay = min(self.rule.base_delay * 2 ** (extra - 1), self.rule.max_delay)
        last = max(state.failures[-1] if state.failures else 0.0, state.began if state.pending else 0.0)
        return max(0.0, last + delay - now)

    def begin(self, key: str) -> None:
        """An attempt of ``key`` starts: until :meth:`end`, :meth:`wait` counts it as a failure."""
        state = self._state(key, self._clock())
        state.pending += 1
        state.began = self._clock()

    def end(self, key: str) -> None:
        """The attempt begun with :meth:`begin` is over (record its outcome with :meth:`failed`/:meth:`succeeded`)."""
        state = self._keys.get(key)
        if state is not None and state.pending:
            state.pending -= 1
            if not state.pending and not state.failures and state.locked_until <= self._clock():
                del self._keys[key]  # nothing to remember: an address that only ever logged in keeps no entry

    def failed(self, key: str) -> bool:
        """Record a failed attempt of ``key``; ``True`` when this one locked it (``lockout_after`` reached)."""
        now = self._clock()
        state = self._state(key, now)
        self._expire(state, now)
        state.failures.append(now)
        if len(state.failures) >= self.rule.lockout_after:
            state.locked_until = now + self.rule.lockout
            state.failures.clear()
            return True
        return False

    def succeeded(self, key: str) -> None:
        """Forget ``key``'s failures (a lockout in force stays)."""
        state = self._keys.get(key)
        if state is not None and state.locked_until <= self._clock():
            if state.pending:
                state.failures.clear()  # others' attempts are still in flight: keep counting them
            else:
                del self._keys[key]

    def locked(self, key: str) -> bool:
        state = self._keys.get(key)
        return state is not None and state.locked_until > self._clock()

    def _state(self, key: str, now: float) -> _State:
        state = self._keys.get(key)
        if state is None:
            if len(self._keys) >= self.max_keys:
                self._prune(now)
            state = self._keys[key] = _State()
        return state

    def _expire(self, state: _State, now: float) -> None:
        horizon = now - self.rule.window
        while state.failures and state.failures[0] < horizon:
            state.failures.pop(0)

    def _prune(self, now: float) -> None:
        for key in list(self._keys):
            state = self._keys[key]
            self._expire(state, now)
            if not state.failures and not state.pending and state.locked_until <= now:
                del self._keys[key]
        if len(self._keys) >= self.max_keys:  # still full: drop the oldest half rather than grow
            for key in list(self._keys)[: self.max_keys // 2]:
                if not self._keys[key].pending:
                    del self._keys[key]

    def __len__(self) -> int:
        return len(self._keys)


__all__ = ["Throttle", "ThrottleRule"]
