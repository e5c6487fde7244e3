"""Calling other services by name: load balancing, deadlines, retries, breakers.

::

    client = ServiceClient(view, caller="orders", timeout=5.0)
    r = await client.get("catalog", "/products", params={"limit": 10})
    r.raise_for_status()            # 4xx/5xx -> the matching meshkit error
    products = r.json()

The pure building blocks are reusable on their own (the gateway uses them too):

- :mod:`.balancer`: :class:`PowerOfTwoChoices`, :class:`RoundRobin` over
  :class:`~.balancer.Candidate` objects (``weight``, ``in_flight``, ``available()``);
- :mod:`.breaker`: :class:`CircuitBreaker` (closed / open / half_open);
- :mod:`.retry`: :class:`Backoff` (exponential, full jitter), :class:`RetryBudget`;
- :mod:`.outlier`: :class:`OutlierDetector` (consecutive-failure ejection);
- :mod:`.stats`: :class:`InstanceStats` (in flight, latency EWMA);
- :mod:`.pool`: :class:`ServicePool` / :class:`Endpoint`: one upstream service's
  instances with their breakers, ejection, balancer and retry budget.
"""

from meshkit.basis.client.balancer import Candidate, PowerOfTwoChoices, RoundRobin
from meshkit.basis.client.breaker import CircuitBreaker
from meshkit.basis.client.outlier import OutlierDetector
from meshkit.basis.client.pool import Endpoint, ServicePool
from meshkit.basis.client.response import Response
from meshkit.basis.client.retry import IDEMPOTENT_METHODS, Backoff, RetryBudget
from meshkit.basis.client.service_client import ServiceClient
from meshkit.basis.client.stats import InstanceStats, StatsTable

__all__ = [
    "IDEMPOTENT_METHODS",
    "Backoff",
    "Candidate",
    "CircuitBreaker",
    "Endpoint",
    "InstanceStats",
    "OutlierDetector",
    "PowerOfTwoChoices",
    "Response",
    "RetryBudget",
    "RoundRobin",
    "ServiceClient",
    "ServicePool",
    "StatsTable",
]
