"""What a saga is: a named list of steps, each an action and the compensation that undoes it.

::

    checkout = Saga("checkout", [
        Step("reserve", reserve_stock, release_stock, timeout=2.0, retries=3),
        Step("charge", charge_card, refund_card, timeout=5.0),
        Step("confirm", confirm_order),                  # nothing to undo after the last step
    ])

An action or compensation is ``async def fn(ctx: StepContext) -> dict | None``.
``ctx`` is the saga's data (a dict) plus ``ctx.idempotency_key`` — the same
for every attempt of that step, by any orchestrator, before or after a crash.
A returned dict is merged into the saga's data (and persisted with the step).

The contract every participant must keep (the orchestrator relies on it to
reach exactly one end after any crash):

1. **Actions are idempotent on the key**: running one twice with the same key
   has the effect of running it once, and returns the same result.
2. **Compensations are idempotent on the key too**, and a compensation whose
   action never took effect is a harmless no-op. It should leave a marker so
   that the action, if it lands late (a timed-out call still in flight), is
   refused instead of applied.
3. An action that fails for good (card declined) raises :class:`Abort` (or a
   4xx :class:`~meshkit.basis.errors.MeshkitError`): no retries, compensation
   starts. Anything else (timeouts, 5xx, connection errors) is retried.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from meshkit.basis.client.retry import Backoff
from meshkit.basis.errors import ConfigError, MeshkitError


class Abort(Exception):
    """Raised by an action that fails for good: the saga compensates without retrying it."""


class StepContext(dict[str, Any]):
    """The saga's data (a dict) given to an action or compensation, plus who and which attempt.

    ``idempotency_key`` is ``"<saga id>:<step name>"`` for the action and its
    compensation alike; ``phase`` says which one is running. ``fence`` grows
    each time a new orchestrator takes the saga over: a participant may refuse
    a call with a lower fence than one it already saw (a stale orchestrator).
    Mutating the dict has no effect: return a dict to add data.
    """

    def __init__(
        self, data: dict[str, Any], *, saga_id: str, saga: str, step: str, phase: str, attempt: int, fence: int
    ) -> None:
        super().__init__(data)
        self.saga_id = saga_id
        self.saga = saga
        self.step = step
        self.phase = phase
        self.attempt = attempt
        self.fence = fence

    @property
    def idempotency_key(self) -> str:
        """Stable for this step of this saga: ``"<saga id>:<step name>"``."""
        return f"{self.saga_id}:{self.step}"


StepFn = Callable[[StepContext], Awaitable[dict[str, Any] | None]]


def retryable(exc: BaseException) -> bool:
    """Whether a failed attempt may be retried: not an :class:`Abort`, not a 4xx other than 408/425/429."""
    if isinstance(exc, Abort):
        return False
    if isinstance(exc, MeshkitError):
        return not (400 <= exc.status < 500) or exc.status in (408, 425, 429)
    return True


@dataclass(frozen=True, slots=True)
class Step:
    """One step: ``action``, its ``compensation`` (``None``: nothing to undo), timeout and retries.

    ``retries`` is the number of attempts after the first (a crash during an
    attempt counts as one). Compensations are retried until they succeed
    (``compensation_attempts=None``), waiting ``backoff`` between attempts; give
    a number to stop after that many and mark the saga ``failed`` for an operator.
    """

    name: str
    action: StepFn
    compensation: StepFn | None = None
    timeout: float = 10.0
    retries: int = 3
    backoff: Backoff = field(default_factory=lambda: Backoff(base=0.1, cap=5.0))
    compensation_timeout: float | None = None
    compensation_attempts: int | None = None

    def __post_init__(self) -> None:
        if not self.name or ":" in self.name or len(self.name) > 100:
            raise ConfigError(f"saga step name {self.name!r} must be 1-100 characters without ':'")
        if self.timeout <= 0 or self.retries < 0:
            raise ConfigError(f"step {self.name!r}: timeout must be > 0 and retries >= 0")
        if self.compensation_attempts is not None and self.compensation_attempts < 1:
            raise ConfigError(f"step {self.name!r}: compensation_attempts must be >= 1 or None (forever)")

    @property
    def attempts(self) -> int:
        """The most times the action runs."""
        return self.retries + 1


@dataclass(frozen=True, slots=True)
class Saga:
    """A named saga definition: its steps run in order; on failure the started ones are undone in reverse."""

    name: str
    steps: Sequence[Step]

    def __post_init__(self) -> None:
        if not self.steps:
            raise ConfigError(f"saga {self.name!r} has no steps")
        names = [s.name for s in self.steps]
        if len(set(names)) != len(names):
            raise ConfigError(f"saga {self.name!r} has duplicate step names: {names}")
        object.__setattr__(self, "steps", tuple(self.steps))

    def index(self, step_name: str) -> int:
        """The position of ``step_name``."""
        for i, step in enumerate(self.steps):
            if step.name == step_name:
                return i
        raise KeyError(step_name)


__all__ = ["Abort", "Saga", "Step", "StepContext", "StepFn", "retryable"]
