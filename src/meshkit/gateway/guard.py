"""Per-route bulkhead and adaptive load shedding.

A route with ``max_concurrency`` lets that many requests reach its upstream at
once; the next ones wait up to ``queue_timeout`` for a slot and are shed (503
with ``Retry-After``) after that. With ``shed_latency``, the guard also sheds
new requests while the upstream's recent latency (EWMA) is above the threshold
*and* requests pile up: a slow upstream gets fewer requests, and the callers
get a quick answer instead of a slow one. A few requests still go through, so
the average can recover when the upstream does.
"""

from __future__ import annotations

import asyncio
from collections import deque

from meshkit.basis.errors import Unavailable

#: Requests in flight below which latency alone never sheds (keeps the EWMA fed).
SHED_MIN_IN_FLIGHT = 4
_ALPHA = 0.2


def shed_error(route: str, why: str) -> Unavailable:
    return Unavailable(f"route {route!r} is overloaded ({why}); retry shortly", reason="overloaded",
                       headers={"Retry-After": "1"})


class Guard:
    """Concurrency slots and a latency average for one route."""

    __slots__ = ("ewma", "in_flight", "max_concurrency", "name", "queue_timeout", "shed_latency", "waiters")

    def __init__(self, name: str, max_concurrency: int | None, queue_timeout: float,
                 shed_latency: float | None) -> None:
        self.name = name
        self.max_concurrency = max_concurrency
        self.queue_timeout = queue_timeout
        self.shed_latency = shed_latency
        self.in_flight = 0
        self.ewma = 0.0
        self.waiters: deque[asyncio.Future] = deque()

    def try_enter(self) -> bool:
        """Take a slot now if one is free (the hot path: no await). Raises when shedding."""
        sl = self.shed_latency
        if sl is not None and self.ewma > sl and self.in_flight >= SHED_MIN_IN_FLIGHT:
            raise shed_error(self.name, f"upstream latency {self.ewma * 1000:.0f} ms is above {sl * 1000:.0f} ms")
        mc = self.max_concurrency
        if mc is None or (self.in_flight < mc and not self.waiters):
            self.in_flight += 1
            return True
        return False

    async def enter(self) -> None:
        """Wait for a slot up to ``queue_timeout``; shed when none frees up."""
        fut = asyncio.get_running_loop().create_future()
        self.waiters.append(fut)
        try:
            await asyncio.wait_for(fut, self.queue_timeout)
        except TimeoutError:
            if fut.done() and not fut.cancelled():
                return  # the slot arrived as the timer fired: keep it
            self._forget(fut)
            raise shed_error(self.name, f"{self.in_flight} requests in flight, the limit is "
                                        f"{self.max_concurrency}") from None
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():
                self.leave(None)  # we were handed a slot we will not use: pass it on
            else:
                self._forget(fut)
            raise

    def _forget(self, fut: asyncio.Future) -> None:
        try:
            self.waiters.remove(fut)
        except ValueError:
            pass

    def leave(self, latency: float | None) -> None:
        """Release a slot (handing it to the oldest waiter) and feed the latency average."""
        if latency is not None:
            self.ewma += _ALPHA * (latency - self.ewma)
        while self.waiters:
            fut = self.waiters.popleft()
            if not fut.done():
                fut.set_result(None)  # the slot passes on: in_flight stays the same
                return
        self.in_flight -= 1
