"""A typed async client of the SSO, over the platform's service client.

::

    sso = SsoClient(service.client)                   # a meshkit.basis.client.ServiceClient
    pair = await sso.login("ann@example.com", "a long passphrase")
    decision = await sso.authorize(pair.access_token, "orders:read", resource={"owner": "usr_1"})
    engine = PolicyEngine(await sso.policy(pair.access_token))    # run the same engine locally

Failures surface as :mod:`meshkit.basis.errors` (``Unauthorized`` with reason
``invalid_credentials`` / ``invalid_grant``, ``TooManyRequests``
``login_throttled``, ``Unprocessable`` ``weak_password``...).
"""

from __future__ import annotations

from typing import Any

from meshkit.basis.policy import Policy
from meshkit.sso_sdk.models import ApiKeyIntrospection, Decision, TokenPair, UserInfo

#: The name the SSO registers under.
SERVICE = "sso"


def _bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


class SsoClient:
    """Calls the SSO service by name (load balanced, retried where safe, deadline-aware)."""

    def __init__(self, service_client: Any, *, service: str = SERVICE, timeout: float | None = None) -> None:
        self._client = service_client
        self._service = service
        self._timeout = timeout

    async def _post(self, path: str, body: dict[str, Any] | None, headers: dict[str, str] | None = None) -> Any:
        resp = await self._client.post(self._service, path, json=body, headers=headers, timeout=self._timeout)
        return resp.raise_for_status()

    async def signup(self, email: str, password: str) -> None:
        """Register (the answer is the same whether or not the address had an account)."""
        await self._post("/v1/signup", {"email": email, "password": password})

    async def login(self, email: str, password: str) -> TokenPair:
        return TokenPair.model_validate_json((await self._post("/v1/login", {"email": email, "password": password})).body)

    async def refresh(self, refresh_token: str) -> TokenPair:
        return TokenPair.model_validate_json((await self._post("/v1/refresh", {"refresh_token": refresh_token})).body)

    async def logout(self, access_token: str | None = None, refresh_token: str | None = None) -> None:
        await self._post("/v1/logout", {"refresh_token": refresh_token},
                         _bearer(access_token) if access_token else None)

    async def userinfo(self, access_token: str) -> UserInfo:
        resp = await self._client.get(self._service, "/v1/userinfo", headers=_bearer(access_token),
                                      timeout=self._timeout)
        return UserInfo.model_validate_json(resp.raise_for_status().body)

    async def authorize(self, access_token: str, permission: str, *, resource: dict[str, Any] | None = None,
                        context: dict[str, Any] | None = None, subject: str | None = None) -> Decision:
        """The SSO's explained decision (``allowed`` false is an answer, not an error)."""
        body = {"permission": permission, "resource": resource, "context": context, "subject": subject}
        return Decision.model_validate_json((await self._post("/v1/authorize", body, _bearer(access_token))).body)

    async def policy(self, access_token: str) -> Policy:
        """The SSO's whole policy, as a :class:`~meshkit.basis.policy.Policy` for a local engine."""
        resp = await self._client.get(self._service, "/v1/policy", headers=_bearer(access_token),
                                      timeout=self._timeout)
        return Policy.from_document(resp.raise_for_status().json())

    async def client_credentials(self, client_id: str, client_secret: str, scope: str | None = None) -> dict[str, Any]:
        """OAuth2 client-credentials grant: ``{access_token, token_type, expires_in, scope}``."""
        body = {"grant_type": "client_credentials", "client_id": client_id, "client_secret": client_secret}
        if scope:
            body["scope"] = scope
        return (await self._post("/oauth/token", body)).json()

    async def introspect_api_key(self, key: str) -> ApiKeyIntrospection:
        """What an API key grants (internal endpoint; ``active`` false when unknown, revoked or expired)."""
        return ApiKeyIntrospection.model_validate_json((await self._post("/v1/apikeys/introspect", {"key": key})).body)
