"""Permissions, grants, roles and explainable decisions: the one policy model of meshkit.

- A *permission* is a string ``area:action`` (``orders:read``). A grant may name a
  pattern: ``orders:*`` (every action of an area) or ``*`` (everything).
- A *grant* gives a role a permission, optionally only under a
  :class:`~meshkit.basis.policy.conditions.Condition` (ABAC), e.g.
  ``orders:read`` where ``resource.owner == subject.id``.
- A *policy* maps role names to their grants. The SSO owns it; services receive
  it (``sso_sdk``) or build one in code for tests.

A caller's token already lists the permissions its roles grant without
condition (``Identity.permissions``); conditional grants never go into a token,
because only the service holding the resource can evaluate them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from meshkit.basis.context import Identity
from meshkit.basis.policy.conditions import Condition, ConditionError

_PERMISSION_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-.:*")


def valid_permission(name: str, *, pattern: bool = False) -> bool:
    """Whether ``name`` is a permission (``area:action``) — or, with ``pattern``, also ``area:*`` / ``*``."""
    if not isinstance(name, str) or not 1 <= len(name) <= 128 or not set(name) <= _PERMISSION_CHARS:
        return False
    if name == "*":
        return pattern
    if "*" in name:
        return pattern and name.endswith(":*") and "*" not in name[:-1] and len(name) > 2
    return ":" in name and not name.startswith(":") and not name.endswith(":")


def permission_matches(pattern: str, permission: str) -> bool:
    """Whether a granted ``pattern`` covers ``permission`` (exact, ``area:*`` or ``*``)."""
    if pattern == permission or pattern == "*":
        return True
    return pattern.endswith(":*") and permission.startswith(pattern[:-1])


@dataclass(frozen=True, slots=True)
class Grant:
    """``role`` may do ``permission`` (when ``condition`` holds, if there is one)."""

    role: str
    permission: str
    condition: Condition | None = None
    id: str | None = None

    @classmethod
    def of(cls, role: str, permission: str, condition: str | None = None, id: str | None = None) -> Grant:
        """Build a grant from text; :class:`ValueError` (``ConditionError``) on a bad permission or condition."""
        if not valid_permission(permission, pattern=True):
            raise ConditionError(f"{permission!r} is not a permission: use area:action, area:* or *")
        return cls(role, permission, Condition(condition) if condition else None, id)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"role": self.role, "permission": self.permission,
                               "condition": self.condition.text if self.condition else None}
        if self.id is not None:
            out["id"] = self.id
        return out


@dataclass(frozen=True, slots=True)
class Decision:
    """The answer to "may this subject do this?", with why.

    ``reason`` is one of ``token`` (an unconditional permission the caller
    holds), ``role`` (a role's unconditional grant), ``condition`` (a
    conditional grant held), ``condition_failed`` (only conditional grants,
    none held), ``missing_permission`` (nothing grants it), ``anonymous``.
    """

    allowed: bool
    permission: str
    reason: str
    explanation: str
    rule: dict[str, Any] | None = None
    #: Conditional grants that were tried and did not hold, with the values they saw.
    failed: tuple[dict[str, Any], ...] = field(default_factory=tuple)

    def to_dict(self) -> dict[str, Any]:
        return {"allowed": self.allowed, "permission": self.permission, "reason": self.reason,
                "explanation": self.explanation, "rule": self.rule, "failed": list(self.failed)}


class Policy:
    """Roles and their grants; :meth:`decide` answers for a subject, a permission and a resource."""

    def __init__(self, grants: Iterable[Grant] = ()) -> None:
        self._by_role: dict[str, list[Grant]] = {}
        for g in grants:
            self._by_role.setdefault(g.role, []).append(g)

    @classmethod
    def from_document(cls, doc: Mapping[str, Any]) -> Policy:
        """From ``{"roles": {"editor": [{"permission": "x:y", "condition": null}, ...]}}`` (the SSO's ``/v1/policy``)."""
        roles = doc.get("roles") if isinstance(doc, Mapping) else None
        if not isinstance(roles, Mapping):
            raise ValueError("a policy document needs a 'roles' mapping")
        grants = []
        for role, items in roles.items():
            for item in items or ():
                grants.append(Grant.of(role, item["permission"], item.get("condition"), item.get("id")))
        return cls(grants)

    def to_document(self) -> dict[str, Any]:
        return {"roles": {role: [{k: v for k, v in g.to_dict().items() if k != "role"} for g in grants]
                          for role, grants in sorted(self._by_role.items())}}

    def roles(self) -> list[str]:
        return sorted(self._by_role)

    def grants(self, role: str) -> list[Grant]:
        return list(self._by_role.get(role, ()))

    def unconditional(self, roles: Iterable[str]) -> frozenset[str]:
        """Permissions (patterns as granted) that ``roles`` hold without condition: what a token carries."""
        return frozenset(g.permission for r in roles for g in self._by_role.get(r, ()) if g.condition is None)

    def decide(self, subject: Identity | None, permission: str, resource: Any = None,
               context: Mapping[str, Any] | None = None) -> Decision:
        """May ``subject`` do ``permission`` on ``resource``? Never raises for a well-formed policy."""
        if subject is None:
            return Decision(False, permission, "anonymous", "no caller identity: authenticate first")
        for held in subject.permissions:
            if permission_matches(held, permission):
                return Decision(True, permission, "token", f"the caller holds {held!r}", {"permission": held})
        scope = {"subject": _subject_scope(subject), "resource": resource if resource is not None else {},
                 "context": dict(context or {})}
        failed: list[dict[str, Any]] = []
        for role in sorted(subject.roles):
            for g in self._by_role.get(role, ()):
                if not permission_matches(g.permission, permission):
                    continue
                if g.condition is None:
                    return Decision(True, permission, "role", f"role {role!r} grants {g.permission!r}", g.to_dict())
                if g.condition.evaluate(scope):
                    return Decision(True, permission, "condition",
                                    f"role {role!r} grants {g.permission!r} when {g.condition.text}", g.to_dict())
                failed.append({**g.to_dict(), "values": g.condition.values(scope)})
        if failed:
            parts = "; ".join(f"role {f['role']!r} grants it only when {f['condition']} "
                              f"(here {', '.join(f'{k}={v!r}' for k, v in f['values'].items())})" for f in failed)
            return Decision(False, permission, "condition_failed", f"{permission!r} denied: {parts}",
                            failed=tuple(failed))
        roles = ", ".join(sorted(subject.roles)) or "none"
        return Decision(False, permission, "missing_permission",
                        f"missing permission {permission!r}: no grant of the caller's roles ({roles}) covers it")


def _subject_scope(subject: Identity) -> dict[str, Any]:
    # An unset attribute is left out (missing), not None: "resource.tenant == subject.tenant"
    # must not hold because neither side has a tenant.
    scope = {"id": subject.subject, "roles": sorted(subject.roles), "permissions": sorted(subject.permissions),
             "kind": subject.kind}
    if subject.tenant:
        scope["tenant"] = subject.tenant
    return scope


__all__ = ["Decision", "Grant", "Policy", "permission_matches", "valid_permission"]
