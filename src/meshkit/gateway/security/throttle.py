"""How much a client's bad credentials may cost: a budget of failed authentications per address.

A verified token is cached, so a client with a good one costs a dictionary lookup.
A token the gateway has not seen costs a signature check (about 100 µs of CPU for
EdDSA, more for RS256), an API key not seen a lookup at the SSO. Authentication runs
before a route's rate limit (which is per user, so it needs the user first): without
a budget, one address sending made-up credentials as fast as it can would keep a
core busy with signature checks and the SSO busy with lookups.

Each failed authentication takes a token from its client address's bucket (``rate``
a second, at most ``burst``). An address with no token left gets 429 with
``Retry-After`` for any credential the gateway would have to check; a cached, valid
token from it is still served. Buckets are kept for the most recent ``max_keys``
addresses (an evicted one starts full again: lenient, never wrong towards a
well-behaved client).
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable

from meshkit.basis.errors import TooManyRequests


class FailureThrottle:
    """Failed authentications per client address: ``rate`` a second, ``burst`` at once."""

    __slots__ = ("_buckets", "_clock", "burst", "max_keys", "rate", "refused")

    def __init__(self, rate: float = 10.0, burst: int = 100, *, max_keys: int = 100_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if not rate > 0 or burst < 1 or max_keys < 1:
            raise ValueError("rate must be > 0, burst and max_keys at least 1")
        self.rate, self.burst, self.max_keys = rate, burst, max_keys
        self._clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # address -> (tokens, at)
        self.refused = 0

    def _tokens(self, client: str, now: float) -> float:
        entry = self._buckets.get(client)
        if entry is None:
            return float(self.burst)
        tokens, at = entry
        return min(float(self.burst), tokens + max(0.0, now - at) * self.rate)

    def check(self, client: str) -> None:
        """Raise 429 when ``client`` has no failure left to spend (before a credential is checked)."""
        if client not in self._buckets:
            return
        tokens = self._tokens(client, self._clock())
        if tokens < 1.0:
            self.refused += 1
            wait = math.ceil((1.0 - tokens) / self.rate)
            raise TooManyRequests(
                f"too many failed authentications from {client}; wait {wait} s and send a valid credential",
                reason="auth_failures", headers={"Retry-After": str(wait)})

    def failed(self, client: str) -> None:
        """Count one failed authentication of ``client``."""
        now = self._clock()
        self._buckets[client] = (max(0.0, self._tokens(client, now) - 1.0), now)
        self._buckets.move_to_end(client)
        while len(self._buckets) > self.max_keys:
            self._buckets.popitem(last=False)

    def __len__(self) -> int:
        return len(self._buckets)


__all__ = ["FailureThrottle"]
