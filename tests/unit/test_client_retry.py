"""Backoff bounds and retry budget limits."""

from __future__ import annotations

import random

import pytest

from meshkit.basis.client.retry import IDEMPOTENT_METHODS, Backoff, RetryBudget


class Clock:
    def __init__(self) -> None:
        self.now = 50.0

    def __call__(self) -> float:
        return self.now


def test_backoff_grows_with_full_jitter_and_cap():
    b = Backoff(base=0.1, cap=1.0, factor=2.0, rng=random.Random(1))
    assert [b.ceiling(i) for i in range(6)] == [0.1, 0.2, 0.4, 0.8, 1.0, 1.0]
    for attempt in range(8):
        samples = [b.delay(attempt) for _ in range(500)]
        assert all(0 <= s <= b.ceiling(attempt) for s in samples)
        # full jitter: spread over the whole range, not bunched at the top
        assert min(samples) < 0.1 * b.ceiling(attempt) and max(samples) > 0.9 * b.ceiling(attempt)
    assert b.ceiling(10_000) == 1.0
    with pytest.raises(ValueError):
        Backoff(factor=0.5)


def test_budget_allows_ratio_of_calls():
    clock = Clock()
    budget = RetryBudget(0.2, min_per_second=0, window=10.0, clock=clock)
    assert not budget.try_retry()
    for _ in range(100):
        budget.record_call()
    granted = sum(budget.try_retry() for _ in range(100))
    assert granted == 20
    clock.now += 11  # the window slides: the old calls no longer pay for retries
    assert not budget.try_retry()


def test_budget_minimum_lets_low_traffic_retry():
    clock = Clock()
    budget = RetryBudget(0.2, min_per_second=1.0, window=5.0, clock=clock)
    budget.record_call()
    granted = sum(budget.try_retry() for _ in range(50))
    assert granted == 5  # the reserve: 1/s over a 5 s window
    assert budget.snapshot()["retries"] == 5


def test_idempotent_methods():
    assert {"GET", "HEAD", "OPTIONS", "PUT", "DELETE"} == IDEMPOTENT_METHODS
    assert "POST" not in IDEMPOTENT_METHODS and "PATCH" not in IDEMPOTENT_METHODS
