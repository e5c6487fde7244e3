"""Passive outlier ejection: consecutive failures eject, time returns, max percent holds."""

from __future__ import annotations

from meshkit.basis.client.outlier import OutlierDetector
from meshkit.basis.client.stats import InstanceStats, StatsTable
from meshkit.basis.client.window import RollingCounts


class Clock:
    def __init__(self) -> None:
        self.now = 10.0

    def __call__(self) -> float:
        return self.now


def detector(clock, n: int = 4) -> OutlierDetector:
    d = OutlierDetector(consecutive_failures=3, base_ejection=5.0, max_ejection=12.0,
                        max_ejected_percent=50.0, clock=clock)
    d.set_population([f"s.{i}" for i in range(n)])
    return d


def test_consecutive_failures_eject_and_time_returns():
    clock = Clock()
    d = detector(clock)
    assert not d.record("s.0", False) and not d.record("s.0", False)
    d.record("s.0", True)  # a success resets the streak
    assert not d.record("s.0", False) and not d.record("s.0", False)
    assert d.record("s.0", False)
    assert d.is_ejected("s.0") and d.ejected() == ["s.0"] and not d.is_ejected("s.1")
    clock.now += 5.0
    assert not d.is_ejected("s.0") and d.ejected() == []


def test_repeated_ejection_lasts_longer_capped():
    clock = Clock()
    d = detector(clock)
    periods = []
    for _ in range(4):
        for _ in range(3):
            d.record("s.1", False)
        start = clock.now
        while d.is_ejected("s.1"):
            clock.now += 1.0
        periods.append(clock.now - start)
    assert periods == [5.0, 10.0, 12.0, 12.0]


def test_max_ejected_percent():
    clock = Clock()
    d = detector(clock, n=4)
    for key in ("s.0", "s.1", "s.2"):
        for _ in range(3):
            d.record(key, False)
    assert d.ejected() == ["s.0", "s.1"]  # 50 % of 4
    lone = detector(clock, n=1)
    for _ in range(10):
        lone.record("s.0", False)
    assert lone.ejected() == []  # never eject a service's only instance


def test_population_change_forgets_gone_instances():
    clock = Clock()
    d = detector(clock)
    for _ in range(3):
        d.record("s.3", False)
    d.set_population(["s.0", "s.1"])
    assert not d.is_ejected("s.3") and d.ejected() == []


def test_stats_and_rolling_counts():
    st = InstanceStats()
    st.begin(), st.begin()
    assert st.in_flight == 2
    st.end(0.010)
    st.end(0.020)
    assert st.in_flight == 0 and st.calls == 2 and abs(st.ewma - 0.012) < 1e-9
    table = StatsTable()
    table.get("a").begin()
    table.get("b")
    table.retain(["a"])
    assert "a" in table and "b" not in table and table.get("a").in_flight == 1
    clock = Clock()
    rc = RollingCounts(10.0, 10, clock)
    rc.add(3, 1)
    clock.now += 5
    rc.add(2, 2)
    assert rc.totals() == (5, 3)
    clock.now += 5.5
    assert rc.totals() == (2, 2)
    clock.now += 100
    assert rc.totals() == (0, 0)
