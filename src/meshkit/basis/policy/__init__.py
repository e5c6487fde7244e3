"""One policy engine for the whole platform: RBAC with ABAC conditions, explainable decisions.

::

    from meshkit.basis.policy import Grant, Policy, PolicyEngine

    policy = Policy([
        Grant.of("customer", "orders:read", "resource.owner == subject.id"),
        Grant.of("support", "orders:read", "resource.tenant == subject.tenant"),
        Grant.of("admin", "orders:*"),
    ])
    decision = policy.decide(identity, "orders:read", {"owner": "u-1", "tenant": "acme"})
    decision.allowed, decision.explanation

    engine = PolicyEngine(policy)
    @engine.requires("orders:read", resource=load_order)   # on a Starlette handler
    async def get_order(request): ...

The SSO evaluates the same engine behind ``POST /v1/authorize`` (for callers in
other languages) and serves its policy at ``GET /v1/policy`` (``sso_sdk`` loads
it into a :class:`Policy`). Conditions are a small parsed language
(:mod:`~meshkit.basis.policy.conditions`), never Python ``eval``.
"""

from meshkit.basis.policy.conditions import MISSING, Condition, ConditionError
from meshkit.basis.policy.guard import PolicyEngine, ResourceLoader
from meshkit.basis.policy.model import Decision, Grant, Policy, permission_matches, valid_permission

__all__ = [
    "MISSING",
    "Condition",
    "ConditionError",
    "Decision",
    "Grant",
    "Policy",
    "PolicyEngine",
    "ResourceLoader",
    "permission_matches",
    "valid_permission",
]
