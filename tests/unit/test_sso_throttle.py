"""sso.domain.throttle: free failures, growing delays, lockout window, success resets the account."""

from __future__ import annotations

from meshkit.sso.domain import Throttle, ThrottleRule


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_delays_grow_then_lock():
    clock = Clock()
    t = Throttle(ThrottleRule(free=3, base_delay=1.0, max_delay=8.0, lockout_after=8, lockout=600, window=900),
                 clock=clock)
    waits = []
    for _ in range(7):
        assert t.wait("k") == 0.0 or waits  # the first attempts are free
        t.failed("k")
        waits.append(t.wait("k"))
        clock.now += waits[-1]  # the attacker waits exactly as long as told
    assert waits[:3] == [0.0, 0.0, 0.0]
    assert waits[3:] == [1.0, 2.0, 4.0, 8.0]
    t.failed("k")  # 8th failure: locked
    assert t.locked("k") and 599 < t.wait("k") <= 600
    clock.now += 601
    assert t.wait("k") == 0.0 and not t.locked("k")


def test_max_delay_caps_the_growth():
    clock = Clock()
    t = Throttle(ThrottleRule(free=0, base_delay=1.0, max_delay=5.0, lockout_after=100), clock=clock)
    for _ in range(10):
        t.failed("k")
    assert t.wait("k") == 5.0


def test_success_clears_an_account_but_not_a_lockout():
    clock = Clock()
    t = Throttle(ThrottleRule(free=1, lockout_after=3, lockout=60), clock=clock)
    t.failed("a"), t.failed("a")
    assert t.wait("a") > 0
    t.succeeded("a")
    assert t.wait("a") == 0.0
    for _ in range(3):
        t.failed("a")
    t.succeeded("a")
    assert t.locked("a")


def test_failures_outside_the_window_are_forgotten():
    clock = Clock()
    t = Throttle(ThrottleRule(free=2, lockout_after=5, window=60), clock=clock)
    for _ in range(4):
        t.failed("k")
    assert t.wait("k") > 0
    clock.now += 61
    assert t.wait("k") == 0.0


def test_keys_are_bounded():
    clock = Clock()
    t = Throttle(ThrottleRule(window=10), clock=clock, max_keys=100)
    for i in range(1000):
        t.failed(f"ip-{i}")
        clock.now += 0.001
    assert len(t) <= 100


def test_attempts_in_flight_count_until_they_end():
    """Guesses sent at once all passed wait() before the first had failed: unlimited parallel guessing."""
    clock = Clock()
    t = Throttle(ThrottleRule(free=3, base_delay=1.0, max_delay=8.0, lockout_after=6, lockout=600, window=900),
                 clock=clock)
    admitted = 0
    for _ in range(50):  # fifty guesses arrive before any password check has finished
        if t.wait("k") == 0.0:
            t.begin("k")
            admitted += 1
    assert admitted == 4  # the free ones and one more, as if each had failed
    for _ in range(admitted):
        t.end("k")
        t.failed("k")
    assert t.wait("k") > 0
    clock.now += 2.0
    assert t.wait("k") == 0.0  # all ended: the usual delay after four failures
    t.begin("k")
    t.end("k")
    t.succeeded("k")  # a success still clears the account
    assert t.wait("k") == 0.0 and len(t) == 0
    t.begin("10.0.0.1")
    t.end("10.0.0.1")  # an attempt that did not fail leaves nothing behind
    assert len(t) == 0
