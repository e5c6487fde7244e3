"""One service's instances as a caller sees them: load, breaker and ejection state.

A :class:`ServicePool` is rebuilt from the registry view whenever the service's
instances change (:meth:`ServicePool.sync`); an instance that stays keeps its
breaker, its ejection history and its in-flight count. The service client and
the gateway both keep one pool per upstream service::

    pool = ServicePool("catalog")
    pool.sync(view.instances("catalog"))
    ep = pool.pick()                      # None: nothing available
    if ep is not None and ep.breaker.allow():
        ep.begin(); ...; ep.end(latency)
        pool.record(ep, success)
"""

from __future__ import annotations

import time
from collections.abc import Callable, Container, Sequence

from meshkit.basis.client.balancer import PowerOfTwoChoices
from meshkit.basis.client.breaker import CircuitBreaker
from meshkit.basis.client.outlier import OutlierDetector
from meshkit.basis.client.retry import RetryBudget
from meshkit.basis.client.stats import InstanceStats
from meshkit.basis.errors import Unavailable
from meshkit.basis.instance import Instance


class Endpoint(InstanceStats):
    """One instance of a service, with its live load, breaker and ejection check.

    It is a :class:`~meshkit.basis.client.balancer.Candidate`: ``weight``,
    ``in_flight`` and :meth:`available`.
    """

    __slots__ = ("_detector", "breaker", "host", "instance", "key", "port", "weight")

    def __init__(self, instance: Instance, breaker: CircuitBreaker, detector: OutlierDetector) -> None:
        super().__init__()
        self.instance = instance
        self.key = instance.key
        self.host = instance.address
        self.port = instance.port
        self.weight = instance.weight
        self.breaker = breaker
        self._detector = detector

    def available(self) -> bool:
        """``False`` while its breaker is open (or out of half-open probes) or it is ejected."""
        return self.breaker.available() and not self._detector.is_ejected(self.key)

    @property
    def ejected(self) -> bool:
        """Is it ejected by the outlier detector right now?"""
        return self._detector.is_ejected(self.key)

    def snapshot(self) -> dict:
        """Breaker state, load and ejection of this instance, for admin/debug pages."""
        out = {"address": f"{self.host}:{self.port}", "weight": self.weight, "ejected": self.ejected}
        out.update(super().snapshot())
        out["breaker"] = self.breaker.snapshot()
        return out

    def __repr__(self) -> str:
        return f"<Endpoint {self.key} {self.host}:{self.port} in_flight={self.in_flight}>"


class ServicePool:
    """The endpoints of one service, a balancer over them, outlier detection and a retry budget.

    The factories let a caller tune policy per service (the gateway reads them
    from route settings); the defaults suit service-to-service calls.
    """

    def __init__(
        self,
        service: str,
        *,
        balancer: Callable[[], PowerOfTwoChoices] | None = None,
        breaker: Callable[[], CircuitBreaker] | None = None,
        detector: OutlierDetector | None = None,
        budget: RetryBudget | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.service = service
        self._new_breaker = breaker or (lambda: CircuitBreaker(clock=clock))
        self.balancer = (balancer or PowerOfTwoChoices)()
        self.detector = detector or OutlierDetector(clock=clock)
        self.budget = budget or RetryBudget(clock=clock)
        self.endpoints: list[Endpoint] = []
        self._by_key: dict[str, Endpoint] = {}
        #: Set when the registry says the service changed; the owner re-syncs lazily.
        self.stale = True

    def sync(self, instances: Sequence[Instance]) -> None:
        """Adopt the service's current instances, keeping the state of those that stay."""
        by_key: dict[str, Endpoint] = {}
        for inst in instances:
            ep = self._by_key.get(inst.key)
            if ep is not None and (ep.host, ep.port, ep.weight) == (inst.address, inst.port, inst.weight):
                ep.instance = inst
            else:
                # New, or moved to another address: its history says nothing about the new one.
                ep = Endpoint(inst, self._new_breaker(), self.detector)
            by_key[inst.key] = ep
        self._by_key = by_key
        self.endpoints = list(by_key.values())
        self.detector.set_population(by_key)
        self.balancer.update(self.endpoints)
        self.stale = False

    def pick(self, exclude: Container[Endpoint] | None = None) -> Endpoint | None:
        """An available endpoint chosen by the balancer, or ``None``."""
        return self.balancer.pick(exclude)

    def record(self, ep: Endpoint, success: bool) -> None:
        """Feed one call's outcome to the endpoint's breaker and to outlier detection."""
        ep.breaker.record(success)
        self.detector.record(ep.key, success)

    def unavailable(self) -> Unavailable:
        """The error to raise when :meth:`pick` finds nothing, saying why and what to do."""
        n = len(self.endpoints)
        if n == 0:
            return Unavailable(
                f"no instance of service {self.service!r} is registered: start it, or check that "
                "caller and callee use the same registry (MESHKIT_REGISTRY_URL / MESHKIT_NATS_URL)",
                reason="no_instances", details={"service": self.service},
            )
        opened = sum(1 for ep in self.endpoints if not ep.breaker.available())
        ejected = sum(1 for ep in self.endpoints if ep.ejected)
        return Unavailable(
            f"all {n} instance(s) of service {self.service!r} are unavailable "
            f"({opened} circuit(s) open, {ejected} ejected after failures); retry later",
            reason="upstream_unavailable",
            details={"service": self.service, "instances": n, "open": opened, "ejected": ejected},
        )

    def snapshot(self) -> dict:
        """Per instance state plus the retry budget, for admin/debug pages."""
        return {
            "instances": {ep.key: ep.snapshot() for ep in self.endpoints},
            "retry_budget": self.budget.snapshot(),
        }
