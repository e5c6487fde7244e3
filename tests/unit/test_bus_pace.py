"""Pace: the recent arrival rate that decides between going at once and batching."""

from __future__ import annotations

import pytest

from meshkit.basis.bus.pace import Pace


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def steady(pace: Pace, clock: Clock, per_second: float, seconds: float) -> None:
    for _ in range(int(per_second * seconds)):
        clock.now += 1 / per_second
        pace.add(1)


def test_a_steady_rate_reads_as_itself():
    clock = Clock()
    pace = Pace(250, clock=clock)
    steady(pace, clock, 200, 1.0)
    assert pace.rate() == pytest.approx(200, rel=0.1)
    assert not pace.busy()
    steady(pace, clock, 1000, 1.0)
    assert pace.rate() == pytest.approx(1000, rel=0.1)
    assert pace.busy()


def test_one_arrival_after_a_quiet_spell_is_not_a_stream():
    clock = Clock()
    pace = Pace(250, clock=clock)
    clock.now += 30
    pace.add(1)
    assert not pace.busy()


def test_a_burst_is_busy_and_is_forgotten_within_a_few_memories():
    clock = Clock()
    pace = Pace(250, memory=0.1, clock=clock)
    pace.add(100)
    assert pace.busy()
    clock.now += 0.5
    assert not pace.busy()
    assert pace.rate() < 10


def test_counting_nothing_lets_the_rate_fall():
    clock = Clock()
    pace = Pace(250, clock=clock)
    steady(pace, clock, 2000, 0.5)
    assert pace.busy()
    for _ in range(10):  # loop turns that found nothing
        clock.now += 0.05
        pace.add(0)
    assert not pace.busy()


@pytest.mark.parametrize("kwargs", [{"eager_rate": -1}, {"eager_rate": 10, "memory": 0}])
def test_bad_settings_are_refused(kwargs):
    eager = kwargs.pop("eager_rate")
    with pytest.raises(ValueError):
        Pace(eager, **kwargs)
