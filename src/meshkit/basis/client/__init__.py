"""Calling other services by name: load balancing, deadlines, retries, breakers.

The pure building blocks are reusable on their own (the gateway uses them too):

- :mod:`.balancer`: :class:`PowerOfTwoChoices`, :class:`RoundRobin` over
  :class:`~.balancer.Candidate` objects (``weight``, ``in_flight``, ``available()``);
- :mod:`.breaker`: :class:`CircuitBreaker` (closed / open / half_open);
- :mod:`.retry`: :class:`Backoff` (exponential, full jitter), :class:`RetryBudget`;
- :mod:`.outlier`: :class:`OutlierDetector` (consecutive-failure ejection);
- :mod:`.stats`: :class:`InstanceStats` (in flight, latency EWMA).
"""

from meshkit.basis.client.balancer import Candidate, PowerOfTwoChoices, RoundRobin
from meshkit.basis.client.breaker import CircuitBreaker
from meshkit.basis.client.outlier import OutlierDetector
from meshkit.basis.client.retry import IDEMPOTENT_METHODS, Backoff, RetryBudget
from meshkit.basis.client.stats import InstanceStats, StatsTable

__all__ = [
    "IDEMPOTENT_METHODS",
    "Backoff",
    "Candidate",
    "CircuitBreaker",
    "InstanceStats",
    "OutlierDetector",
    "PowerOfTwoChoices",
    "RetryBudget",
    "RoundRobin",
    "StatsTable",
]
