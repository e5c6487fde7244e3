"""The policy engine as services use it: a decorator on a handler, or one call.

::

    engine = PolicyEngine(policy)                       # a Policy (from the SSO via sso_sdk, or built in code)

    async def load_order(request):                      # the resource the decision is about
        return await orders.get(request.path_params["id"])   # a mapping or an object with attributes

    @engine.requires("orders:read", resource=load_order)
    async def get_order(request):
        order = request.state.resource                  # loaded once, by the guard
        ...

    await engine.enforce(identity, "orders:read", order)    # same check inside a use case

A denial is :class:`~meshkit.basis.errors.Forbidden` (403, reason
``permission_denied``) whose ``details`` are the :class:`Decision` — which
permission, which grant was missing or which condition failed, on what values.
No identity is :class:`~meshkit.basis.errors.Unauthorized` (401).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from meshkit.basis.context import Identity
from meshkit.basis.errors import Forbidden, Unauthorized
from meshkit.basis.policy.model import Decision, Policy

ResourceLoader = Callable[[Any], Awaitable[Any]]


class PolicyEngine:
    """Evaluates one :class:`Policy` (swappable with :meth:`update`) and counts its decisions."""

    def __init__(self, policy: Policy | None = None) -> None:
        self.policy = policy or Policy()
        self.updated_at = time.time()
        self.allowed = 0
        self.denied = 0

    def update(self, policy: Policy) -> None:
        """Replace the policy (e.g. after fetching a newer one from the SSO); one assignment, so atomic."""
        self.policy = policy
        self.updated_at = time.time()

    def decide(self, identity: Identity | None, permission: str, resource: Any = None,
               context: Mapping[str, Any] | None = None) -> Decision:
        """The :class:`Decision` for ``identity`` doing ``permission`` on ``resource``."""
        decision = self.policy.decide(identity, permission, resource, context)
        if decision.allowed:
            self.allowed += 1
        else:
            self.denied += 1
        return decision

    async def enforce(self, identity: Identity | None, permission: str, resource: Any = None,
                      context: Mapping[str, Any] | None = None) -> Decision:
        """Like :meth:`decide`, but 401 without identity and 403 (with the decision as details) when denied."""
        decision = self.decide(identity, permission, resource, context)
        if decision.allowed:
            return decision
        if identity is None:
            raise Unauthorized("this needs an authenticated caller; send a token through the gateway")
        raise Forbidden(decision.explanation, reason="permission_denied", details=decision.to_dict())

    def requires(self, permission: str, *, resource: ResourceLoader | None = None) -> Callable:
        """Decorate a Starlette handler: check ``permission`` for the injected identity before it runs.

        ``resource`` is ``async (request) -> resource`` (a 404 it raises passes
        through); the loaded resource is left in ``request.state.resource``.
        """

        def decorate(handler: Callable[[Any], Awaitable[Any]]) -> Callable[[Any], Awaitable[Any]]:
            @functools.wraps(handler)
            async def guarded(request: Any) -> Any:
                from meshkit.basis.web import identity as injected

                who = injected(request)
                if who is None:
                    raise Unauthorized("this endpoint needs an authenticated caller; call it through the gateway")
                loaded = await resource(request) if resource is not None else None
                await self.enforce(who, permission, loaded)
                request.state.resource = loaded
                return await handler(request)

            guarded.permission = permission  # type: ignore[attr-defined]  # for route listings
            return guarded

        return decorate


__all__ = ["PolicyEngine", "ResourceLoader"]
