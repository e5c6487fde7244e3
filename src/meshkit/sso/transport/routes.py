"""The SSO's HTTP surface, declared once."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from meshkit.basis.errors import Unprocessable
from meshkit.sso.transport.admin import AdminHandlers
from meshkit.sso.transport.public import PublicHandlers

#: (method, path, handler name) of the public endpoints. Through the gateway: /api/sso/<x> -> /v1/<x>.
PUBLIC = (
    ("POST", "/v1/signup", "signup"),
    ("POST", "/v1/login", "login"),
    ("POST", "/v1/refresh", "refresh"),
    ("POST", "/v1/logout", "logout"),
    ("GET", "/v1/userinfo", "userinfo"),
    ("GET", "/userinfo", "userinfo"),
    ("POST", "/v1/password", "password"),
    ("POST", "/v1/authorize", "authorize"),
    ("GET", "/v1/policy", "policy"),
    ("POST", "/v1/apikeys/introspect", "introspect_api_key"),
    ("GET", "/.well-known/jwks.json", "jwks"),
    ("GET", "/.well-known/openid-configuration", "openid_configuration"),
    ("POST", "/oauth/token", "oauth_token"),
)

ADMIN = (
    ("GET", "/v1/admin/users", "list_users"),
    ("POST", "/v1/admin/users", "create_user"),
    ("GET", "/v1/admin/users/{id}", "get_user"),
    ("POST", "/v1/admin/users/{id}/disable", "disable_user"),
    ("POST", "/v1/admin/users/{id}/enable", "enable_user"),
    ("PUT", "/v1/admin/subjects/{subject}/roles/{role}", "assign_role"),
    ("DELETE", "/v1/admin/subjects/{subject}/roles/{role}", "unassign_role"),
    ("GET", "/v1/admin/permissions", "list_permissions"),
    ("POST", "/v1/admin/permissions", "create_permission"),
    ("DELETE", "/v1/admin/permissions/{name}", "delete_permission"),
    ("GET", "/v1/admin/roles", "list_roles"),
    ("POST", "/v1/admin/roles", "create_role"),
    ("GET", "/v1/admin/roles/{name}", "get_role"),
    ("DELETE", "/v1/admin/roles/{name}", "delete_role"),
    ("POST", "/v1/admin/roles/{name}/grants", "add_grant"),
    ("DELETE", "/v1/admin/roles/{name}/grants/{grant}", "delete_grant"),
    ("GET", "/v1/admin/service-accounts", "list_accounts"),
    ("POST", "/v1/admin/service-accounts", "create_account"),
    ("POST", "/v1/admin/service-accounts/{id}/secret", "rotate_account_secret"),
    ("POST", "/v1/admin/service-accounts/{id}/disable", "disable_account"),
    ("GET", "/v1/admin/api-keys", "list_keys"),
    ("POST", "/v1/admin/api-keys", "create_key"),
    ("DELETE", "/v1/admin/api-keys/{id}", "revoke_key"),
    ("GET", "/v1/admin/keys", "list_signing_keys"),
    ("POST", "/v1/admin/keys/rotate", "rotate_signing_keys"),
    ("GET", "/v1/admin/audit", "audit_log"),
)


def routes(public: PublicHandlers, admin: AdminHandlers) -> list[Route]:
    """Starlette routes for every endpoint, bound to the handlers."""
    out: list[Route] = []
    for table, handlers in ((PUBLIC, public), (ADMIN, admin)):
        for method, path, name in table:
            out.append(Route(path, _no_nul(getattr(handlers, name)), methods=[method],
                             name=f"sso.{name}.{method.lower()}"))
    return out


def _no_nul(handler: Callable[[Request], Awaitable[Response]]) -> Callable[[Request], Awaitable[Response]]:
    """``handler``, after refusing a path or query parameter with a NUL character (422).

    Ids, names and cursors in the URL reach SQL; PostgreSQL refuses a NUL in text
    (a 500). No stored value holds one, so nothing is lost by refusing it here.
    """

    async def endpoint(request: Request) -> Response:
        for where, params in (("path", request.path_params.items()), ("query", request.query_params.multi_items())):
            bad = sorted({name for name, value in params if "\x00" in str(value)})
            if bad:
                raise Unprocessable(f"the {where} parameter {bad[0]!r} holds a NUL character",
                                    details=[{"loc": name, "message": "must not contain a NUL character",
                                              "type": "invalid"} for name in bad])
        return await handler(request)

    return endpoint
