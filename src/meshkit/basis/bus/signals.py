"""What a handler answers: ``Ack``, ``Retry(delay)`` or ``Drop`` — outcomes, not errors.

A handler returns one of them (returning ``None`` is ``Ack``). An exception is
also an answer: the consumer retries it with a growing delay, and after the
maximum number of deliveries moves the event to the dead-letter stream.

- ``Ack``: done; never deliver again.
- ``Retry(delay)``: not now; deliver again after ``delay`` seconds (counts as a delivery).
- ``Drop``: never handle this one (e.g. an event this service does not care about);
  it is not dead-lettered.
"""

from __future__ import annotations

from dataclasses import dataclass


class Outcome:
    """Base of the handler outcomes."""

    __slots__ = ()


@dataclass(frozen=True, slots=True)
class _Ack(Outcome):
    def __repr__(self) -> str:
        return "Ack"


@dataclass(frozen=True, slots=True)
class _Drop(Outcome):
    def __repr__(self) -> str:
        return "Drop"


@dataclass(frozen=True, slots=True)
class Retry(Outcome):
    """Deliver again after ``delay`` seconds (``None``: the consumer's backoff for this delivery)."""

    delay: float | None = None
    reason: str = "retry requested by the handler"


#: The event is handled.
Ack: Outcome = _Ack()
#: The event is not for us: acknowledge it without handling, never dead-letter it.
Drop: Outcome = _Drop()

__all__ = ["Ack", "Drop", "Outcome", "Retry"]
