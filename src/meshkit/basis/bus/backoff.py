"""Redelivery delays: exponential per delivery, capped, with a little jitter."""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How a failed event is retried: ``initial * factor**(delivery-1)`` seconds, at most ``maximum``.

    ``max_deliveries`` counts every delivery (the first one included); the
    delivery that fails at that count sends the event to the dead-letter stream —
    unless it failed with :class:`~meshkit.basis.errors.Unavailable` (the database or
    a service it needs is away: the event is not at fault), which is retried every
    ``maximum`` seconds for as long as it lasts.
    """

    max_deliveries: int = 5
    initial: float = 0.5
    factor: float = 2.0
    maximum: float = 60.0
    jitter: float = 0.1

    def delay(self, delivery: int) -> float:
        """Seconds to wait before delivery number ``delivery + 1``."""
        base = min(self.maximum, self.initial * self.factor ** max(0, delivery - 1))
        return base * (1.0 + random.uniform(-self.jitter, self.jitter)) if self.jitter else base

    def exhausted(self, delivery: int) -> bool:
        """True when delivery number ``delivery`` was the last one allowed."""
        return delivery >= self.max_deliveries


__all__ = ["RetryPolicy"]
