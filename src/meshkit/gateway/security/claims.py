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
silently dropped: a half-read identity is worse than none. So does a value the
identity headers cannot carry as it is (:func:`header_problem`): a role
``"reader,admin"`` would reach the upstream as two roles, ``" admin"`` as
``admin`` (header values are trimmed), a CR/LF or a character outside Latin-1
not at all, or as ``?``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from meshkit.basis.context import Identity
from meshkit.gateway.security.tokens import TokenError

KINDS = frozenset({"user", "service"})
# Printable Latin-1: what a header value carries byte for byte (no C0/C1 controls, no DEL).
_PRINTABLE = re.compile(r"[\x20-\x7e\xa0-\xff]*")


def header_problem(name: str, value: str | None = None, items: Iterable[str] = ()) -> str | None:
    """Why ``value`` (or one of the list ``items``) cannot reach the upstream unchanged in an identity
    header, or ``None``. Items are joined with ``,``: none may hold one."""
    for v in (value,) if value is not None else items:
        if not _PRINTABLE.fullmatch(v) or v != v.strip() or (value is None and ("," in v or not v)):
            return (f"'{name}' value {v[:64]!r} cannot be passed on in a header as it is (a comma in a list, "
                    "surrounding spaces, a control character or one outside Latin-1)")
    return None


def _strings(value: Any, name: str) -> frozenset[str]:
    if value is None:
        return frozenset()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise TokenError(f"claim '{name}' must be a list of strings")
    problem = header_problem(name, items=value)
    if problem:
        raise TokenError(f"claim {problem}")
    return frozenset(value)


def _optional_str(value: Any, name: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise TokenError(f"claim '{name}' must be a string")
    problem = header_problem(name, value)
    if problem:
        raise TokenError(f"claim {problem}")
    return value or None


def identity_from_claims(claims: Mapping[str, Any]) -> Identity:
    """The caller's identity from a verified token's claims; :class:`TokenError` if malformed."""
    sub = claims.get("sub")
    if not isinstance(sub, str) or not sub:
        raise TokenError("token has no subject ('sub')")
    problem = header_problem("sub", sub)
    if problem:
        raise TokenError(f"claim {problem}")
    if "permissions" in claims:
        permissions = _strings(claims["permissions"], "permissions")
    else:
        scope = claims.get("scope")
        if scope is not None and not isinstance(scope, str):
            raise TokenError("claim 'scope' must be a space-separated string")
        permissions = frozenset((scope or "").split())
        problem = header_problem("scope", items=permissions)
        if problem:
            raise TokenError(f"claim {problem}")
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
