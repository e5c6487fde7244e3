"""The admin API (``/v1/admin/...``): every call needs ``sso:admin``; every change is audited."""

from __future__ import annotations

import re
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from meshkit.basis.errors import Forbidden, Unprocessable
from meshkit.basis.policy import permission_matches
from meshkit.basis.web import json_response, parse_body
from meshkit.sso.app import ADMIN_PERMISSION, Authz, KeyRing, Machines, Sessions, Tokens
from meshkit.sso.domain import ApiKey, ServiceAccount, User
from meshkit.sso.transport.caller import require_admin
from meshkit.sso_sdk.models import (
    NewApiKey,
    NewGrant,
    NewPermission,
    NewRole,
    NewServiceAccount,
    NewUser,
    RotateKeys,
)


def user_json(u: User, roles: list[str] | None = None) -> dict[str, Any]:
    out = {"id": u.id, "email": u.email, "disabled": u.disabled, "tenant": u.tenant, "created_at": u.created_at,
           "updated_at": u.updated_at}
    if roles is not None:
        out["roles"] = roles
    return out


def account_json(a: ServiceAccount, roles: list[str] | None = None) -> dict[str, Any]:
    out = {"id": a.id, "client_id": a.id, "name": a.name, "disabled": a.disabled, "tenant": a.tenant,
           "created_at": a.created_at}
    if roles is not None:
        out["roles"] = roles
    return out


def key_json(k: ApiKey) -> dict[str, Any]:
    return {"id": k.id, "name": k.name, "subject": k.subject, "scopes": k.scopes, "tenant": k.tenant,
            "created_by": k.created_by, "created_at": k.created_at, "expires_at": k.expires_at,
            "revoked_at": k.revoked_at}


_DIGITS = re.compile(r"[0-9]{1,18}")


def _number(request: Request, name: str, default: int | None, low: int, high: int) -> int | None:
    """Query parameter ``name`` as an integer in ``[low, high]`` (ASCII digits only), or 422."""
    raw = request.query_params.get(name)
    if raw is None:
        return default
    # Not str.isdigit(): it is true for "²" and "①", which int() refuses (that was a 500).
    if not _DIGITS.fullmatch(raw) or not low <= int(raw) <= high:
        raise Unprocessable(f"{name} must be a whole number between {low} and {high}",
                            details=[{"loc": name, "message": f"between {low} and {high}", "type": "range"}])
    return int(raw)


def _limit(request: Request, default: int = 50) -> int:
    return _number(request, "limit", default, 1, 500) or default


class AdminHandlers:
    """Users, roles, permissions, grants, service accounts, API keys, signing keys, audit log."""

    def __init__(self, sessions: Sessions, tokens: Tokens, keys: KeyRing, authz: Authz, machines: Machines,
                 audit: Any) -> None:
        self.sessions, self.tokens, self.keys, self.authz, self.machines = sessions, tokens, keys, authz, machines
        self.audit = audit

    async def _admin(self, request: Request) -> str:
        """The caller's subject, who must hold ``sso:admin`` in the token *and* still, by their roles now.

        A token carries the permissions of when it was issued: an administrator whose role was taken
        kept the admin API for the token's lifetime (time enough to give the role back to themselves).
        API keys carry exactly their scopes (they have no roles).
        """
        ident = require_admin(request, self.tokens).identity
        if ident.kind in ("user", "service"):
            _roles, held = await self.authz.claims_for(ident.subject)
            if not any(permission_matches(p, ADMIN_PERMISSION) for p in held):
                raise Forbidden(f"this needs the permission {ADMIN_PERMISSION!r}, which your roles no longer grant",
                                reason="missing_permission", details={"missing_permissions": [ADMIN_PERMISSION]})
        return ident.subject

    # users
    async def list_users(self, request: Request) -> Response:
        await self._admin(request)
        users = await self.sessions.accounts.list(after=request.query_params.get("after"), limit=_limit(request))
        return json_response({"items": [user_json(u) for u in users],
                              "next": users[-1].id if len(users) == _limit(request) else None})

    async def create_user(self, request: Request) -> Response:
        actor = await self._admin(request)
        body = await parse_body(request, NewUser)
        user = await self.sessions.accounts.create(body.email, body.password, actor, tenant=body.tenant)
        return json_response(user_json(user, []), status=201)

    async def get_user(self, request: Request) -> Response:
        await self._admin(request)
        user = await self.sessions.accounts.get(request.path_params["id"])
        return json_response(user_json(user, await self.authz.roles_of(user.id)))

    async def disable_user(self, request: Request) -> Response:
        actor = await self._admin(request)
        await self.sessions.disable_user(request.path_params["id"], actor)
        return json_response(user_json(await self.sessions.accounts.get(request.path_params["id"])))

    async def enable_user(self, request: Request) -> Response:
        actor = await self._admin(request)
        return json_response(user_json(await self.sessions.accounts.set_disabled(request.path_params["id"], False,
                                                                                  actor)))

    # role assignments (users and service accounts alike)
    async def assign_role(self, request: Request) -> Response:
        actor = await self._admin(request)
        roles = await self.authz.assign(request.path_params["subject"], request.path_params["role"], actor)
        return json_response({"subject": request.path_params["subject"], "roles": roles})

    async def unassign_role(self, request: Request) -> Response:
        actor = await self._admin(request)
        roles = await self.authz.unassign(request.path_params["subject"], request.path_params["role"], actor)
        return json_response({"subject": request.path_params["subject"], "roles": roles})

    # permissions
    async def list_permissions(self, request: Request) -> Response:
        await self._admin(request)
        return json_response({"items": await self.authz.permissions()})

    async def create_permission(self, request: Request) -> Response:
        actor = await self._admin(request)
        body = await parse_body(request, NewPermission)
        return json_response(await self.authz.add_permission(body.name, body.description, actor), status=201)

    async def delete_permission(self, request: Request) -> Response:
        await self.authz.remove_permission(request.path_params["name"], await self._admin(request))
        return Response(status_code=204)

    # roles and grants
    async def list_roles(self, request: Request) -> Response:
        await self._admin(request)
        return json_response({"items": await self.authz.roles()})

    async def create_role(self, request: Request) -> Response:
        actor = await self._admin(request)
        body = await parse_body(request, NewRole)
        return json_response(await self.authz.add_role(body.name, body.description, actor), status=201)

    async def get_role(self, request: Request) -> Response:
        await self._admin(request)
        return json_response(await self.authz.role(request.path_params["name"]))

    async def delete_role(self, request: Request) -> Response:
        await self.authz.remove_role(request.path_params["name"], await self._admin(request))
        return Response(status_code=204)

    async def add_grant(self, request: Request) -> Response:
        actor = await self._admin(request)
        body = await parse_body(request, NewGrant)
        grant = await self.authz.add_grant(request.path_params["name"], body.permission, body.condition, actor)
        return json_response(grant, status=201)

    async def delete_grant(self, request: Request) -> Response:
        await self.authz.remove_grant(request.path_params["name"], request.path_params["grant"], await self._admin(request))
        return Response(status_code=204)

    # service accounts
    async def list_accounts(self, request: Request) -> Response:
        await self._admin(request)
        return json_response({"items": [account_json(a) for a in await self.machines.accounts()]})

    async def create_account(self, request: Request) -> Response:
        actor = await self._admin(request)
        body = await parse_body(request, NewServiceAccount)
        for role in body.roles:  # all known before anything is made: a 404 half-way left an account behind
            await self.authz.role(role)
        account, secret = await self.machines.create_account(body.name, actor, tenant=body.tenant)
        for role in body.roles:
            await self.authz.assign(account.id, role, actor)
        out = account_json(account, await self.authz.roles_of(account.id))
        out["client_secret"] = secret  # shown once
        return json_response(out, status=201, headers={"cache-control": "no-store"})

    async def rotate_account_secret(self, request: Request) -> Response:
        secret = await self.sessions.rotate_account_secret(request.path_params["id"], await self._admin(request))
        return json_response({"client_id": request.path_params["id"], "client_secret": secret},
                             headers={"cache-control": "no-store"})

    async def disable_account(self, request: Request) -> Response:
        await self.sessions.disable_account(request.path_params["id"], await self._admin(request))
        return Response(status_code=204)

    # API keys
    async def list_keys(self, request: Request) -> Response:
        await self._admin(request)
        return json_response({"items": [key_json(k) for k in await self.machines.keys()]})

    async def create_key(self, request: Request) -> Response:
        actor = await self._admin(request)
        body = await parse_body(request, NewApiKey)
        key, raw = await self.machines.create_key(body.name, body.subject, body.scopes, actor,
                                                  expires_in=body.expires_in, tenant=body.tenant)
        return json_response({**key_json(key), "key": raw}, status=201, headers={"cache-control": "no-store"})

    async def revoke_key(self, request: Request) -> Response:
        await self.machines.revoke_key(request.path_params["id"], await self._admin(request))
        return Response(status_code=204)

    # signing keys
    async def list_signing_keys(self, request: Request) -> Response:
        await self._admin(request)
        return json_response({"items": self.keys.states()})

    async def rotate_signing_keys(self, request: Request) -> Response:
        actor = await self._admin(request)
        raw = await request.body()
        body = await parse_body(request, RotateKeys) if raw.strip() else RotateKeys()
        key = await self.keys.rotate(actor, emergency=body.emergency)
        return json_response({"current": key.kid, "keys": self.keys.states()})

    # audit
    async def audit_log(self, request: Request) -> Response:
        await self._admin(request)
        entries = await self.audit.list(after=_number(request, "before", None, 1, 2**63 - 1),
                                        limit=_limit(request, 100))
        return json_response({"items": [{"id": e.id, "at": e.at, "actor": e.actor, "action": e.action,
                                         "target": e.target, "details": e.details} for e in entries]})
