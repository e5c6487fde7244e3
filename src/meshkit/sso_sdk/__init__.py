"""The SSO's contract for other services: wire models, a typed client, an API-key source for gateways,
the events it publishes (``events``: token revocations) and their AsyncAPI document.

::

    from meshkit.sso_sdk import SsoClient

    sso = SsoClient(service.client)
    decision = await sso.authorize(token, "orders:read", resource={"owner": "usr_1"})

The policy engine itself lives in :mod:`meshkit.basis.policy`; ``SsoClient.policy``
loads the SSO's policy into it.

``asyncapi.json`` in this package describes the SSO's events (stream ``SSO``,
``sso.token.revoked``). It is generated from the code; after changing an event,
regenerate it (a test fails while the committed file is stale)::

    python -m meshkit.sso.asyncapi --write

This package imports nothing of the SSO's implementation (an import-linter
contract checks that).
"""

from importlib import resources

from meshkit.sso_sdk.apikeys import ApiKeyGrant, SsoApiKeys
from meshkit.sso_sdk.client import SERVICE, SsoClient
from meshkit.sso_sdk.events import EVENTS, STREAM, TOKEN_REVOKED, TokenRevoked, revocation_stream
from meshkit.sso_sdk.models import (
    ApiKeyIntrospection,
    AuthorizeIn,
    Credentials,
    Decision,
    TokenPair,
    UserInfo,
)


def asyncapi_json() -> bytes:
    """The committed AsyncAPI document."""
    return resources.files(__name__).joinpath("asyncapi.json").read_bytes()


__all__ = [
    "EVENTS",
    "SERVICE",
    "STREAM",
    "TOKEN_REVOKED",
    "ApiKeyGrant",
    "ApiKeyIntrospection",
    "AuthorizeIn",
    "Credentials",
    "Decision",
    "SsoApiKeys",
    "SsoClient",
    "TokenPair",
    "TokenRevoked",
    "UserInfo",
    "asyncapi_json",
    "revocation_stream",
]
