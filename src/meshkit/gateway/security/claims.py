"""From verified JWT claims to the :class:`~meshkit.basis.context.Identity` the gateway injects.

Mapping (the SSO issues tokens in this shape):

- ``sub`` → ``subject`` (required, a non-empty string);
- ``roles`` (a list of strings) → ``roles``;
- ``permissions`` (a list of strings) → ``permissions``; when absent, the OAuth2
  ``scope`` claim (one space-separated string) is used instead;
- ``jti`` → ``token_id`` (what revocation names), ``tenant`` → ``tenant``;
- kind: the ``client_kind`` claim, ``"user"`` or ``"service"``; absent means
  ``"user"``. We do not infer it from ``azp``: many issuers set ``azp`` on
  every token, user or machine, so its presence says nothing reliable.

A claim with the wrong type makes the whole token invalid rather than being
silently dropped: a half-read identity is worse than none.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from meshkit.basis.context import Identity
from meshkit.gateway.security.tokens import TokenError

KINDS = frozenset({"user", "service"})


def _strings(value: Any, name: str) -> frozenset[str]:
    if value is None:
        return frozenset()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise TokenError(f"claim '{name}' must be a list of strings")
    return frozenset(value)


def _optional_str(value: Any, name: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise TokenError(f"claim '{name}' must be a string")
    return value or None


def identity_from_claims(claims: Mapping[str, Any]) -> Identity:
    """The caller's identity from a verified token's claims; :class:`TokenError` if malformed."""
    sub = claims.get("sub")
    if not isinstance(sub, str) or not sub:
        raise TokenError("token has no subject ('sub')")
    if "permissions" in claims:
        permissions = _strings(claims["permissions"], "permissions")
    else:
        scope = claims.get("scope")
        if scope is not None and not isinstance(scope, str):
            raise TokenError("claim 'scope' must be a space-separated string")
        permissions = frozenset((scope or "").split())
    kind = claims.get("client_kind", "user")
    if kind not in KINDS:
        raise TokenError("claim 'client_kind' must be 'user' or 'service'")
    return Identity(
        subject=sub,
        roles=_strings(claims.get("roles"), "roles"),
        permissions=permissions,
        token_id=_optional_str(claims.get("jti"), "jti"),
        tenant=_optional_str(claims.get("tenant"), "tenant"),
        kind=kind,
    )
