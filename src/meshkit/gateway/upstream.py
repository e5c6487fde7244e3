"""Upstream pools: the live instances of each service, with breaker, load and ejection state.

A :class:`Pool` per service is fed by the registry view (one callback per
change, never a lookup per request) and outlives route reloads, so breaker and
ejection state survive a reload. A static URL gets a pool of one fixed member.
Picking is delegated to :mod:`meshkit.basis.client.balancer`; a member is
``available()`` unless its breaker is open or the outlier detector ejected it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from urllib.parse import urlsplit

from meshkit.basis.client.balancer import PowerOfTwoChoices, RoundRobin
from meshkit.basis.client.breaker import CircuitBreaker
from meshkit.basis.client.outlier import OutlierDetector
from meshkit.basis.client.retry import Backoff, RetryBudget
from meshkit.basis.client.stats import InstanceStats
from meshkit.basis.instance import Instance


class Member:
    """One instance as the gateway sees it."""

    __slots__ = ("breaker", "host", "host_header", "instance", "key", "outlier", "port", "stats", "version")

    def __init__(self, instance: Instance, breaker: CircuitBreaker, outlier: OutlierDetector) -> None:
        self.instance = instance
        self.key = instance.key
        self.host = instance.address
        self.port = instance.port
        self.version = instance.version
        self.host_header = f"{instance.address}:{instance.port}".encode()
        self.breaker = breaker
        self.outlier = outlier
        self.stats = InstanceStats()

    @property
    def weight(self) -> int:
        return self.instance.weight

    @property
    def in_flight(self) -> int:
        return self.stats.in_flight

    def available(self) -> bool:
        return self.breaker.available() and not self.outlier.is_ejected(self.key)

    def record(self, success: bool) -> None:
        """Outcome of a call: feeds the breaker and the outlier detector."""
        self.breaker.record(success)
        self.outlier.record(self.key, success)

    def snapshot(self) -> dict:
        return {
            "instance": self.instance.instance_id, "address": f"{self.host}:{self.port}",
            "version": self.version, "weight": self.weight,
            "breaker": self.breaker.snapshot(), "ejected": self.outlier.is_ejected(self.key),
            **self.stats.snapshot(),
        }


class PoolSettings:
    """Resilience knobs shared by every pool (from the gateway settings)."""

    def __init__(self, *, breaker_failure_ratio: float = 0.5, breaker_min_calls: int = 20,
                 breaker_open_for: float = 5.0, eject_after: int = 5, eject_for: float = 10.0,
                 max_ejected_percent: float = 50.0, retry_ratio: float = 0.2) -> None:
        self.breaker = lambda: CircuitBreaker(failure_ratio=breaker_failure_ratio, min_calls=breaker_min_calls,
                                              open_for=breaker_open_for)
        self.outlier = lambda: OutlierDetector(consecutive_failures=eject_after, base_ejection=eject_for,
                                               max_ejection=eject_for * 10, max_ejected_percent=max_ejected_percent)
        self.budget = lambda: RetryBudget(retry_ratio)


class Pool:
    """The members of one upstream and its balancers (one per policy and version subset)."""

    def __init__(self, name: str, settings: PoolSettings, static: bool = False) -> None:
        self.name = name
        self.static = static
        self.settings = settings
        self.outlier = settings.outlier()
        self.budget = settings.budget()
        self.members: dict[str, Member] = {}
        self.versions: dict[str, list[Member]] = {}
        self._balancers: dict[tuple[str, str | None], PowerOfTwoChoices | RoundRobin] = {}
        self.updated = time.monotonic()

    def update(self, instances: list[Instance]) -> None:
        """Replace the instance set; members that stay keep their breaker and stats."""
        members: dict[str, Member] = {}
        for inst in instances:
            old = self.members.get(inst.key)
            if old is not None and old.instance == inst:
                members[inst.key] = old
            else:
                m = Member(inst, old.breaker if old else self.settings.breaker(), self.outlier)
                if old is not None:
                    m.stats = old.stats
                members[inst.key] = m
        self.members = members
        versions: dict[str, list[Member]] = {}
        for m in members.values():
            versions.setdefault(m.version, []).append(m)
        self.versions = versions
        self.outlier.set_population(members)
        for (_policy, version), bal in self._balancers.items():
            bal.update(self._subset(version))
        self.updated = time.monotonic()

    def _subset(self, version: str | None) -> list[Member]:
        if version is None:
            return list(self.members.values())
        if version.startswith("!"):
            return [m for m in self.members.values() if m.version != version[1:]]
        return self.versions.get(version, [])

    def balancer(self, policy: str, version: str | None = None) -> PowerOfTwoChoices | RoundRobin:
        """The balancer for ``policy`` over all members, those of ``version``, or all but ``!version``.

        Built once, then kept current by :meth:`update`.
        """
        key = (policy, version)
        bal = self._balancers.get(key)
        if bal is None:
            cls = RoundRobin if policy == "round_robin" else PowerOfTwoChoices
            bal = self._balancers[key] = cls(self._subset(version))
        return bal

    def snapshot(self) -> dict:
        return {"members": [m.snapshot() for m in self.members.values()], "retry_budget": self.budget.snapshot(),
                "ejected": self.outlier.ejected()}


class Pools:
    """Every pool, by service name (static URLs by ``url:<url>``)."""

    def __init__(self, settings: PoolSettings, instances: Callable[[str], list[Instance]]) -> None:
        self.settings = settings
        self._instances = instances
        self.pools: dict[str, Pool] = {}
        self.backoff = Backoff()

    def service(self, name: str) -> Pool:
        """The pool of service ``name``, created (and filled from the view) on first use."""
        pool = self.pools.get(name)
        if pool is None:
            pool = self.pools[name] = Pool(name, self.settings)
            pool.update(self._instances(name))
        return pool

    def static(self, url: str) -> Pool:
        """A pool of one member for a static URL."""
        name = f"url:{url}"
        pool = self.pools.get(name)
        if pool is None:
            parts = urlsplit(url)
            port = parts.port or (443 if parts.scheme == "https" else 80)
            inst = Instance(service=name, instance_id=f"{parts.hostname}:{port}", address=parts.hostname or "",
                            port=port)
            pool = self.pools[name] = Pool(name, self.settings, static=True)
            pool.update([inst])
        return pool

    def on_change(self, service: str) -> None:
        """Registry view callback: refresh that service's pool, if we route to it."""
        pool = self.pools.get(service)
        if pool is not None:
            pool.update(self._instances(service))

    def retain(self, names: set[str]) -> None:
        """Forget pools no route uses any more."""
        for name in list(self.pools):
            if name not in names:
                del self.pools[name]
