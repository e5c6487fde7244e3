"""Circuit breaker state machine, with a hand-moved clock."""

from __future__ import annotations

from meshkit.basis.client.breaker import CircuitBreaker


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def breaker(clock, **kw) -> CircuitBreaker:
    opts = dict(failure_ratio=0.5, min_calls=10, window=10.0, open_for=2.0, max_open_for=8.0, clock=clock)
    opts.update(kw)
    return CircuitBreaker(**opts)


def test_stays_closed_below_min_calls_and_ratio():
    clock = Clock()
    b = breaker(clock)
    for _ in range(9):
        b.record(False)
    assert b.state == "closed"  # 9 calls < min_calls
    for _ in range(11):
        b.record(True)
    b.record(False)
    assert b.state == "closed"  # 10/21 failures, under 50 %


def test_opens_on_ratio_then_half_open_then_closes():
    clock = Clock()
    b = breaker(clock)
    for _ in range(5):
        b.record(True)
    for _ in range(6):
        b.record(False)
    assert b.state == "open" and not b.allow() and not b.available()
    clock.now += 1.9
    assert b.state == "open"
    clock.now += 0.2
    assert b.state == "half_open" and b.available()
    assert b.allow()  # the one probe
    assert not b.allow() and not b.available()
    b.record(True)
    assert b.state == "closed" and b.allow()
    assert b.snapshot()["calls"] == 0  # a fresh window after closing


def test_failed_probe_reopens_with_growing_cooldown():
    clock = Clock()
    b = breaker(clock, min_calls=1, failure_ratio=0.0)
    b.record(False)
    assert b.state == "open"
    cooldowns = []
    for _ in range(4):
        start = clock.now
        while b.state == "open":
            clock.now += 0.5
        cooldowns.append(clock.now - start)
        assert b.allow()
        b.record(False)
    assert cooldowns == [2.0, 4.0, 8.0, 8.0]  # doubles, capped at max_open_for


def test_old_failures_leave_the_window():
    clock = Clock()
    b = breaker(clock)
    for _ in range(9):
        b.record(False)
    clock.now += 11
    for _ in range(9):
        b.record(True)
    b.record(False)
    assert b.state == "closed"  # the 9 old failures expired: 1/10


def test_stale_probe_does_not_wedge_half_open():
    clock = Clock()
    b = breaker(clock, min_calls=1, failure_ratio=0.0)
    b.record(False)
    clock.now += 2.0
    assert b.allow()  # a probe that never reports (its caller was cancelled)
    assert not b.allow()
    clock.now += 2.0
    assert b.allow()
    b.record(True)
    assert b.state == "closed"


def test_late_result_while_open_is_ignored():
    clock = Clock()
    b = breaker(clock, min_calls=1, failure_ratio=0.0)
    b.record(False)
    b.record(True)
    assert b.state == "open"
    assert b.snapshot()["state"] == "open" and b.snapshot()["retry_in"] == 2.0
