"""The SSO's contract for other services: wire models, a typed client, an API-key source for gateways.

::

    from meshkit.sso_sdk import SsoClient

    sso = SsoClient(service.client)
    decision = await sso.authorize(token, "orders:read", resource={"owner": "usr_1"})

The policy engine itself lives in :mod:`meshkit.basis.policy`; ``SsoClient.policy``
loads the SSO's policy into it. This package imports nothing of the SSO's
implementation (an import-linter contract checks that).
"""

from meshkit.sso_sdk.apikeys import ApiKeyGrant, SsoApiKeys
from meshkit.sso_sdk.client import SERVICE, SsoClient
from meshkit.sso_sdk.models import (
    ApiKeyIntrospection,
    AuthorizeIn,
    Credentials,
    Decision,
    TokenPair,
    UserInfo,
)

__all__ = [
    "SERVICE",
    "ApiKeyGrant",
    "ApiKeyIntrospection",
    "AuthorizeIn",
    "Credentials",
    "Decision",
    "SsoApiKeys",
    "SsoClient",
    "TokenPair",
    "UserInfo",
]
