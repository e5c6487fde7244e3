"""FailureThrottle: a budget of failed authentications per client address."""

from __future__ import annotations

import pytest

from meshkit.basis.errors import TooManyRequests
from meshkit.gateway.security.throttle import FailureThrottle


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_the_burst_is_spent_then_refused_until_it_refills():
    clock = Clock()
    throttle = FailureThrottle(rate=2.0, burst=3, clock=clock)
    for _ in range(3):
        throttle.check("10.0.0.1")
        throttle.failed("10.0.0.1")
    with pytest.raises(TooManyRequests) as caught:
        throttle.check("10.0.0.1")
    assert caught.value.reason == "auth_failures" and caught.value.headers["Retry-After"] == "1"
    throttle.check("10.0.0.2")  # another address has its own budget
    clock.now += 0.5  # one failure's worth refilled
    throttle.check("10.0.0.1")
    throttle.failed("10.0.0.1")
    with pytest.raises(TooManyRequests):
        throttle.check("10.0.0.1")
    assert throttle.refused == 2


def test_an_address_never_failing_costs_no_memory_and_the_table_is_bounded():
    throttle = FailureThrottle(rate=1.0, burst=5, max_keys=2, clock=Clock())
    throttle.check("a")
    assert len(throttle) == 0
    for address in ("a", "b", "c"):
        throttle.failed(address)
    assert len(throttle) == 2  # the oldest went: it starts full again


@pytest.mark.parametrize("kwargs", [{"rate": 0}, {"burst": 0}, {"max_keys": 0}])
def test_bad_settings_are_refused(kwargs):
    with pytest.raises(ValueError):
        FailureThrottle(**kwargs)
