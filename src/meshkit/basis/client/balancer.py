"""Client-side load balancers: power of two choices and smooth weighted round robin.

A balancer is given the service's candidates once per registry change
(:meth:`update`, where the per-pick tables are precomputed) and then picks one
per call (:meth:`pick`) in O(1) expected time, without allocating. A candidate
is anything with ``weight``, ``in_flight`` and ``available()`` (see
:class:`Candidate`); ``available()`` is where breakers and outlier ejection make
an instance invisible. Weight 0 means "send no traffic" (drained), unless every
candidate has weight 0, in which case they count equally.
"""

from __future__ import annotations

import random
from bisect import bisect_right
from collections.abc import Container, Sequence
from math import gcd
from typing import Generic, Protocol, TypeVar


class Candidate(Protocol):
    """What a balancer needs to know about an instance."""

    @property
    def weight(self) -> int: ...

    @property
    def in_flight(self) -> int: ...

    def available(self) -> bool:
        """``False`` while its breaker is open or it is ejected."""


C = TypeVar("C", bound=Candidate)


def _usable(candidates: Sequence[C]) -> tuple[list[C], list[int]]:
    """The candidates that get traffic and their weights (all 1 when every weight is 0)."""
    pos = [c for c in candidates if c.weight > 0]
    if pos:
        return pos, [c.weight for c in pos]
    return list(candidates), [1] * len(candidates)


class PowerOfTwoChoices(Generic[C]):
    """Sample two distinct candidates by weight; take the one with fewer calls in flight.

    Ties keep the first sample, so with no load the traffic split follows the
    weights exactly; under load, p2c steers away from slow or busy instances
    without the herd effect of "always least loaded".
    """

    __slots__ = ("_cum", "_items", "_rand", "_total", "_uniform")

    def __init__(self, candidates: Sequence[C] = (), *, rng: random.Random | None = None) -> None:
        self._rand = (rng or random.Random()).random
        self.update(candidates)

    def update(self, candidates: Sequence[C]) -> None:
        """Replace the candidate set (call when the registry changes)."""
        items, weights = _usable(candidates)
        self._items: list[C] = items
        self._uniform = len(set(weights)) <= 1
        cum, total = [], 0
        for w in weights:
            total += w
            cum.append(total)
        self._cum, self._total = cum, total

    def _sample(self) -> int:
        if self._uniform:
            # int(random() * n) rather than randrange: same distribution, a third of the cost.
            return int(self._rand() * len(self._items))
        return bisect_right(self._cum, self._rand() * self._total)

    def _other(self, i: int) -> int:
        n = len(self._items)
        if self._uniform:
            j = int(self._rand() * (n - 1))
            return j + 1 if j >= i else j
        for _ in range(4):
            j = self._sample()
            if j != i:
                return j
        return (i + 1) % n  # a very heavy candidate keeps winning: take a neighbour

    def pick(self, exclude: Container[C] | None = None) -> C | None:
        """The chosen candidate, or ``None`` when none is available (and not in ``exclude``)."""
        items = self._items
        n = len(items)
        if n == 0:
            return None
        if n == 1:
            c = items[0]
            return c if c.available() and not (exclude and c in exclude) else None
        for _ in range(3):
            i = self._sample()
            a, b = items[i], items[self._other(i)]
            ok_a = a.available() and not (exclude and a in exclude)
            ok_b = b.available() and not (exclude and b in exclude)
            if ok_a and ok_b:
                return b if b.in_flight < a.in_flight else a
            if ok_a:
                return a
            if ok_b:
                return b
        # Most candidates are out: scan for the least loaded one that is left.
        best = None
        for c in items:
            if c.available() and not (exclude and c in exclude):
                if best is None or c.in_flight < best.in_flight:
                    best = c
        return best

    def __len__(self) -> int:
        return len(self._items)


class RoundRobin(Generic[C]):
    """Smooth weighted round robin (nginx's), precomputed into a schedule.

    Weights 5, 1, 1 give ``a a b a c a a`` rather than ``a a a a a b c``. The
    schedule is built once per :meth:`update`, so a pick is an index step; an
    unavailable candidate is skipped.
    """

    #: Longest schedule; larger weight sums are scaled down (keeping proportions roughly).
    MAX_SCHEDULE = 4096

    __slots__ = ("_items", "_next", "_schedule", "_start")

    def __init__(self, candidates: Sequence[C] = (), *, rng: random.Random | None = None) -> None:
        self._next = 0
        self._start = (rng or random).random()
        self.update(candidates)

    def update(self, candidates: Sequence[C]) -> None:
        """Replace the candidate set (call when the registry changes)."""
        items, weights = _usable(candidates)
        self._items: list[C] = items
        g = 0
        for w in weights:
            g = gcd(g, w)
        weights = [w // g for w in weights] if g > 1 else weights
        total = sum(weights)
        if total > self.MAX_SCHEDULE:
            weights = [max(1, w * self.MAX_SCHEDULE // total) for w in weights]
            total = sum(weights)
        current = [0] * len(weights)
        schedule: list[C] = []
        for _ in range(total):
            best = 0
            for k, w in enumerate(weights):
                current[k] += w
                if current[k] > current[best]:
                    best = k
            current[best] -= total
            schedule.append(items[best])
        self._schedule = schedule
        # Start at a random offset so many clients do not hit the same instance in step.
        self._next = int(self._start * len(schedule)) if schedule else 0

    def pick(self, exclude: Container[C] | None = None) -> C | None:
        """The next available candidate in the schedule, or ``None``."""
        schedule = self._schedule
        n = len(schedule)
        for _ in range(n):
            c = schedule[self._next]
            self._next = (self._next + 1) % n
            if c.available() and not (exclude and c in exclude):
                return c
        return None

    def __len__(self) -> int:
        return len(self._items)
