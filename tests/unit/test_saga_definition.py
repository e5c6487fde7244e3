"""Saga definitions: validation, the step context and its idempotency key, what is retried, what is undone."""

from __future__ import annotations

import pytest

from meshkit.basis.errors import BadGateway, ConfigError, Conflict, TooManyRequests, Unprocessable
from meshkit.basis.saga import PROBE_POINTS, Abort, Saga, Step, StepContext, retryable, saga_tables
from meshkit.basis.saga.driver import next_to_undo


async def act(ctx: StepContext):
    return None


async def undo(ctx: StepContext):
    return None


def test_step_and_saga_validation():
    with pytest.raises(ConfigError):
        Step("a:b", act)
    with pytest.raises(ConfigError):
        Step("a", act, timeout=0)
    with pytest.raises(ConfigError):
        Step("a", act, retries=-1)
    with pytest.raises(ConfigError):
        Step("a", act, compensation_attempts=0)
    with pytest.raises(ConfigError, match="no steps"):
        Saga("empty", [])
    with pytest.raises(ConfigError, match="duplicate"):
        Saga("dup", [Step("a", act), Step("a", act)])
    saga = Saga("ok", [Step("a", act, undo), Step("b", act)])
    assert saga.index("b") == 1 and isinstance(saga.steps, tuple)
    assert Step("a", act, retries=2).attempts == 3


def test_context_is_the_data_plus_a_stable_key():
    ctx = StepContext({"amount": 5}, saga_id="s1", saga="checkout", step="charge", phase="action", attempt=2, fence=3)
    assert ctx["amount"] == 5 and dict(ctx) == {"amount": 5}
    assert ctx.idempotency_key == "s1:charge"
    again = StepContext({}, saga_id="s1", saga="checkout", step="charge", phase="compensation", attempt=1, fence=4)
    assert again.idempotency_key == ctx.idempotency_key  # the compensation finds the action's effect by it


def test_what_is_retried():
    assert retryable(ConnectionError()) and retryable(TimeoutError()) and retryable(RuntimeError())
    assert retryable(BadGateway()) and retryable(TooManyRequests())
    assert not retryable(Abort("declined"))
    assert not retryable(Unprocessable()) and not retryable(Conflict())


def test_only_started_steps_with_a_compensation_are_undone_last_first():
    saga = Saga("s", [Step("a", act, undo), Step("b", act), Step("c", act, undo), Step("d", act, undo)])
    started = {("a", "action"): 1, ("b", "action"): 1, ("c", "action"): 2}
    assert next_to_undo(saga, 3, started) == 2  # d never started
    assert next_to_undo(saga, 1, started) == 0  # b has nothing to undo
    assert next_to_undo(saga, -1, started) == -1
    assert next_to_undo(saga, 99, {}) == -1


def test_probe_points_and_tables():
    assert {"before_action", "after_action", "after_persist", "before_compensation"} <= set(PROBE_POINTS)
    tables = saga_tables("orders")
    assert (tables.instances.name, tables.steps.name) == ("orders_saga_instances", "orders_saga_steps")
    with pytest.raises(ValueError):
        saga_tables("")
