"""Permissions, roles, grants and role assignments; the policy they make, and decisions on it.

Every change is audited (who, what, when) in the transaction that makes it.
The :class:`~meshkit.basis.policy.Policy` built from the grants is cached and
rebuilt after a change here, or after ``policy_ttl`` seconds (changes made by
another SSO instance).
"""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from meshkit.basis.context import Identity
from meshkit.basis.errors import Conflict, NotFound, Unprocessable
from meshkit.basis.policy import (
    Condition,
    ConditionError,
    Decision,
    Policy,
    permission_matches,
    valid_permission,
)
from meshkit.sso.app.ports import AuthzStore
from meshkit.sso.domain import AuditEntry, new_id

ROLE_NAME = re.compile(r"^[a-z][a-z0-9_.-]{0,63}$")
#: The permission that opens the admin API, and the role the bootstrap administrator gets.
ADMIN_PERMISSION = "sso:admin"
ADMIN_ROLE = "admin"


def _now() -> datetime:
    return datetime.now(UTC)


def _invalid(loc: str, message: str) -> Unprocessable:
    return Unprocessable(f"{loc}: {message}", details=[{"loc": loc, "message": message, "type": "invalid"}])


class Authz:
    """RBAC/ABAC administration and decisions over an :class:`AuthzStore`."""

    def __init__(self, store: AuthzStore, *, subject_exists: Callable[[str], Awaitable[bool]],
                 user_active: Callable[[str], Awaitable[bool]] | None = None, policy_ttl: float = 5.0) -> None:
        self._store = store
        self._subject_exists = subject_exists
        #: Whether a subject is a user who can log in (exists, not disabled): who counts as an administrator.
        self._user_active = user_active or subject_exists
        self.policy_ttl = policy_ttl
        self._policy: Policy | None = None
        self._built = 0.0

    # -- the policy ------------------------------------------------------------------------

    async def policy(self) -> Policy:
        """The current policy (cached for ``policy_ttl`` seconds, rebuilt after local changes)."""
        if self._policy is None or time.monotonic() - self._built > self.policy_ttl:
            grants = await self._store.grants()
            from meshkit.basis.policy import Grant

            self._policy = Policy(Grant.of(g["role"], g["permission"], g["condition"], g["id"]) for g in grants)
            self._built = time.monotonic()
        return self._policy

    def _changed(self) -> None:
        self._policy = None

    async def claims_for(self, subject: str) -> tuple[list[str], list[str]]:
        """``(roles, unconditional permissions)`` of ``subject``: what its tokens carry.

        A pattern grant (``orders:*``, ``*``) is carried as is *and* expanded to the
        registered permissions it covers, so a gateway route that names
        ``orders:read`` (an exact match) admits it too.
        """
        roles = await self._store.roles_of(subject)
        held = (await self.policy()).unconditional(roles)
        patterns = [p for p in held if "*" in p]
        if patterns:
            registered = [row["name"] for row in await self._store.permissions()]
            held = held | {name for name in registered if any(permission_matches(p, name) for p in patterns)}
        return roles, sorted(held)

    async def decide(self, identity: Identity, permission: str, resource: Any = None,
                     context: Mapping[str, Any] | None = None) -> Decision:
        """The engine's decision with the subject's *current* roles (not those in an older token)."""
        if not valid_permission(permission):
            raise _invalid("permission", "must look like area:action")
        subject = identity
        if identity.kind == "user":
            # A user's roles may have changed since the token was issued: decide on today's.
            roles = frozenset(await self._store.roles_of(identity.subject))
            subject = Identity(identity.subject, roles, frozenset(), identity.token_id, identity.tenant, "user")
        # API keys and client-credentials tokens are scoped: they keep exactly what they carry.
        return (await self.policy()).decide(subject, permission, resource, context)

    # -- permissions -------------------------------------------------------------------------

    async def add_permission(self, name: str, description: str, actor: str) -> dict[str, Any]:
        if not valid_permission(name):
            raise _invalid("name", "a permission looks like area:action (letters, digits, _ - . :)")
        now = _now()
        await self._store.add_permission(name, description, now,
                                         AuditEntry(actor, "permission.created", name, now, {}))
        return {"name": name, "description": description}

    async def remove_permission(self, name: str, actor: str) -> None:
        if name == ADMIN_PERMISSION:
            raise Conflict(f"{ADMIN_PERMISSION!r} cannot be deleted: it is how the SSO is administered",
                           reason="protected")
        if not await self._store.remove_permission(name, AuditEntry(actor, "permission.deleted", name, _now())):
            raise NotFound(f"no permission {name!r}", reason="permission_not_found")
        self._changed()

    async def permissions(self) -> list[dict[str, Any]]:
        return await self._store.permissions()

    # -- roles and grants -----------------------------------------------------------------

    async def add_role(self, name: str, description: str, actor: str) -> dict[str, Any]:
        if not ROLE_NAME.match(name or ""):
            raise _invalid("name", "a role name is lower case letters, digits, _ . - (at most 64)")
        now = _now()
        await self._store.add_role(name, description, now, AuditEntry(actor, "role.created", name, now, {}))
        return {"name": name, "description": description, "grants": []}

    async def remove_role(self, name: str, actor: str) -> None:
        if name == ADMIN_ROLE:
            raise Conflict("the admin role cannot be deleted: it is how the SSO is administered", reason="protected")
        if not await self._store.remove_role(name, AuditEntry(actor, "role.deleted", name, _now())):
            raise NotFound(f"no role {name!r}", reason="role_not_found")
        self._changed()

    async def roles(self) -> list[dict[str, Any]]:
        grants = await self._store.grants()
        out = []
        for r in await self._store.roles():
            mine = [{"id": g["id"], "permission": g["permission"], "condition": g["condition"]}
                    for g in grants if g["role"] == r["name"]]
            out.append({**r, "grants": mine})
        return out

    async def role(self, name: str) -> dict[str, Any]:
        for r in await self.roles():
            if r["name"] == name:
                return r
        raise NotFound(f"no role {name!r}", reason="role_not_found")

    async def add_grant(self, role: str, permission: str, condition: str | None, actor: str) -> dict[str, Any]:
        """Let ``role`` do ``permission`` (a registered permission, ``area:*`` or ``*``), maybe only when ``condition``."""
        await self.role(role)
        if not valid_permission(permission, pattern=True):
            raise _invalid("permission", "use area:action, area:* or *")
        if "*" not in permission and not await self._store.permission_exists(permission):
            raise _invalid("permission", f"{permission!r} is not registered: create it first (POST /v1/admin/permissions)")
        if condition is not None:
            try:
                condition = Condition(condition).text
            except ConditionError as exc:
                raise _invalid("condition", str(exc)) from exc
        grant_id, now = new_id("grt"), _now()
        await self._store.add_grant(grant_id, role, permission, condition, now, AuditEntry(
            actor, "grant.created", role, now, {"id": grant_id, "permission": permission, "condition": condition}))
        self._changed()
        return {"id": grant_id, "role": role, "permission": permission, "condition": condition}

    async def remove_grant(self, role: str, grant_id: str, actor: str) -> None:
        if role == ADMIN_ROLE and any(g["id"] == grant_id and g["permission"] == ADMIN_PERMISSION
                                      and g["condition"] is None for g in await self._store.grants()):
            raise Conflict(f"the admin role's grant of {ADMIN_PERMISSION!r} cannot be deleted: nobody could "
                           "administer the SSO any more", reason="protected")
        if not await self._store.remove_grant(role, grant_id, AuditEntry(actor, "grant.deleted", role, _now(),
                                                                         {"id": grant_id})):
            raise NotFound(f"role {role!r} has no grant {grant_id!r}", reason="grant_not_found")
        self._changed()

    # -- who holds which role -----------------------------------------------------------------

    async def assign(self, subject: str, role: str, actor: str) -> list[str]:
        await self.role(role)
        if not await self._subject_exists(subject):
            raise NotFound(f"no user or service account {subject!r}", reason="subject_not_found")
        now = _now()
        try:
            await self._store.assign(subject, role, now, AuditEntry(actor, "role.assigned", subject, now,
                                                                    {"role": role}))
        except Conflict:
            pass  # already held: assigning is idempotent
        return await self._store.roles_of(subject)

    async def unassign(self, subject: str, role: str, actor: str) -> list[str]:
        if role == ADMIN_ROLE and subject == actor:
            raise Conflict("you cannot take the admin role from yourself; ask another administrator",
                           reason="protected")
        if role == ADMIN_ROLE:
            await self.keep_an_admin(leaving=subject)
        if not await self._store.unassign(subject, role, AuditEntry(actor, "role.unassigned", subject, _now(),
                                                                    {"role": role})):
            raise NotFound(f"{subject!r} does not hold role {role!r}", reason="role_not_held")
        return await self._store.roles_of(subject)

    async def roles_of(self, subject: str) -> list[str]:
        return await self._store.roles_of(subject)

    async def holders(self, role: str) -> list[str]:
        return await self._store.holders(role)

    async def keep_an_admin(self, *, leaving: str) -> None:
        """409 ``last_admin`` unless a user other than ``leaving`` holds the admin role and can log in."""
        for subject in await self._store.holders(ADMIN_ROLE):
            if subject != leaving and await self._user_active(subject):
                return
        raise Conflict("this would leave no enabled user holding the admin role, and nobody could administer "
                       "the SSO: make another administrator first", reason="last_admin")

    async def ensure_admin_role(self) -> None:
        """Create ``sso:admin`` and the ``admin`` role granting it, if missing (first start).

        Another instance starting at the same time may make each first: that is as good
        (a 409 here made one of them fail to start).
        """
        now = _now()
        with contextlib.suppress(Conflict):
            if not await self._store.permission_exists(ADMIN_PERMISSION):
                await self._store.add_permission(ADMIN_PERMISSION, "administer the SSO", now,
                                                 AuditEntry("system", "permission.created", ADMIN_PERMISSION, now))
        with contextlib.suppress(Conflict):
            if not any(r["name"] == ADMIN_ROLE for r in await self._store.roles()):
                await self._store.add_role(ADMIN_ROLE, "SSO administrators", now,
                                           AuditEntry("system", "role.created", ADMIN_ROLE, now))
        with contextlib.suppress(Conflict):
            if not any(g["role"] == ADMIN_ROLE and g["permission"] == ADMIN_PERMISSION and g["condition"] is None
                       for g in await self._store.grants()):
                gid = new_id("grt")
                await self._store.add_grant(gid, ADMIN_ROLE, ADMIN_PERMISSION, None, now, AuditEntry(
                    "system", "grant.created", ADMIN_ROLE, now, {"id": gid, "permission": ADMIN_PERMISSION}))
        self._changed()
