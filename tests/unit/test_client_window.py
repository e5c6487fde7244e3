"""The rolling window under breakers and retry budgets, against a brute-force count."""

from __future__ import annotations

import random

from meshkit.basis.client.window import RollingCounts


def test_totals_match_a_brute_force_count_of_the_last_window():
    rng = random.Random(7)
    for _ in range(100):
        now = [0.0]
        counts = RollingCounts(10.0, 10, lambda now=now: now[0])
        seen: list[tuple[int, int, int]] = []
        for _ in range(200):
            now[0] += rng.choice([0.0, 0.01, 0.3, 1.0, 2.7, 11.0])
            a, b = rng.randint(0, 2), rng.randint(0, 1)
            counts.add(a, b)
            seen.append((int(now[0]), a, b))
            epoch = int(now[0])
            inside = [s for s in seen if s[0] > epoch - 10]
            assert counts.totals() == (sum(s[1] for s in inside), sum(s[2] for s in inside))


def test_clock_stepping_back_keeps_counting_and_clear_forgets():
    now = [100.0]
    counts = RollingCounts(10.0, 10, lambda: now[0])
    counts.add(1, 0)
    now[0] = 95.0
    counts.add(1, 1)
    assert counts.totals() == (2, 1)
    now[0] = 130.0
    assert counts.totals() == (0, 0)
    counts.add(3, 0)
    counts.clear()
    assert counts.totals() == (0, 0)
