"""Balancers: weights respected, p2c favours the less loaded, unavailable skipped."""

from __future__ import annotations

import random
from collections import Counter

from meshkit.basis.client.balancer import PowerOfTwoChoices, RoundRobin


class Cand:
    def __init__(self, name: str, weight: int = 1, in_flight: int = 0, up: bool = True) -> None:
        self.name, self.weight, self.in_flight, self.up = name, weight, in_flight, up

    def available(self) -> bool:
        return self.up

    def __repr__(self) -> str:
        return self.name


def shares(balancer, n: int = 20000) -> Counter:
    return Counter(balancer.pick().name for _ in range(n))


def test_p2c_respects_weights_without_load():
    cands = [Cand("a", 3), Cand("b", 1), Cand("c", 1)]
    got = shares(PowerOfTwoChoices(cands, rng=random.Random(1)))
    assert abs(got["a"] / 20000 - 0.6) < 0.03
    assert abs(got["b"] / 20000 - 0.2) < 0.03
    assert abs(got["c"] / 20000 - 0.2) < 0.03


def test_p2c_uniform_spreads_evenly():
    cands = [Cand(str(i)) for i in range(4)]
    got = shares(PowerOfTwoChoices(cands, rng=random.Random(2)))
    assert all(abs(v / 20000 - 0.25) < 0.03 for v in got.values()) and len(got) == 4


def test_p2c_favours_less_loaded():
    busy, idle = Cand("busy", in_flight=10), Cand("idle", in_flight=0)
    got = shares(PowerOfTwoChoices([busy, idle], rng=random.Random(3)), 1000)
    # With two candidates both are always compared: the idle one always wins.
    assert got == {"idle": 1000}
    many = [Cand("busy", in_flight=50)] + [Cand(f"n{i}", in_flight=1) for i in range(3)]
    got = shares(PowerOfTwoChoices(many, rng=random.Random(4)), 4000)
    # The busy one wins only when it is paired with itself, which p2c forbids.
    assert got["busy"] == 0


def test_p2c_skips_unavailable_and_excluded():
    a, b, c = Cand("a"), Cand("b", up=False), Cand("c")
    bal = PowerOfTwoChoices([a, b, c], rng=random.Random(5))
    assert "b" not in shares(bal, 2000)
    assert {bal.pick(exclude={a}).name for _ in range(200)} == {"c"}
    assert bal.pick(exclude={a, c}) is None
    c.up = False
    assert {bal.pick().name for _ in range(100)} == {"a"}


def test_p2c_edge_cases():
    assert PowerOfTwoChoices([]).pick() is None
    one = Cand("one")
    bal = PowerOfTwoChoices([one])
    assert bal.pick() is one and bal.pick(exclude={one}) is None
    # weight 0 = drained, unless everyone is drained
    drained, live = Cand("d", 0), Cand("l", 1)
    assert shares(PowerOfTwoChoices([drained, live]), 500) == {"l": 500}
    assert len(shares(PowerOfTwoChoices([Cand("x", 0), Cand("y", 0)], rng=random.Random(6)), 500)) == 2


def test_round_robin_is_smooth_and_weighted():
    a, b, c = Cand("a", 5), Cand("b", 1), Cand("c", 1)
    rr = RoundRobin([a, b, c], rng=random.Random(7))
    seq = [rr.pick().name for _ in range(70)]
    assert Counter(seq) == {"a": 50, "b": 10, "c": 10}
    # smooth: never more than 2 a's in a row for 5:1:1 (nginx gives a a b a c a a)
    run = longest = 0
    for x in seq + seq:
        run = run + 1 if x == "a" else 0
        longest = max(longest, run)
    assert longest <= 4


def test_round_robin_skips_unavailable_and_scales_big_weights():
    a, b = Cand("a"), Cand("b", up=False)
    rr = RoundRobin([a, b])
    assert {rr.pick().name for _ in range(10)} == {"a"}
    a.up = False
    assert rr.pick() is None
    big = RoundRobin([Cand("x", 100000), Cand("y", 50000)])
    got = Counter(big.pick().name for _ in range(3000))
    assert abs(got["x"] / 3000 - 2 / 3) < 0.01
    assert RoundRobin([]).pick() is None
