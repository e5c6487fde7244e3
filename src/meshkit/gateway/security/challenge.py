"""401 and 403 answers in the shape RFC 6750 asks for.

Every 401 carries a ``WWW-Authenticate`` challenge; a bad credential says
``error="invalid_token"`` with a short description, a missing one says nothing
more than the realm (RFC 6750 §3.1: no error code when no credential was sent).
"""

from __future__ import annotations

from collections.abc import Iterable

from meshkit.basis.errors import Forbidden, Unauthorized

REALM = "meshkit"


def _quote(value: str) -> str:
    # A quoted-string may not hold '"' or '\'. Descriptions quote what a token says (its 'kid',
    # 'alg', claims): anything but printable ASCII becomes '?' (a 'kid' outside Latin-1 made the
    # header unencodable: a 500 and a logged traceback for anyone who sent one).
    return "".join(c if " " <= c <= "~" and c not in '"\\' else ("'" if c == '"' else "?") for c in value)


def challenge(error: str | None = None, description: str | None = None, scope: str | None = None) -> str:
    """The value of a ``WWW-Authenticate: Bearer ...`` header."""
    parts = [f'Bearer realm="{REALM}"']
    if error:
        parts.append(f'error="{error}"')
    if description:
        parts.append(f'error_description="{_quote(description)}"')
    if scope:
        parts.append(f'scope="{_quote(scope)}"')
    return ", ".join(parts)


def invalid_token(description: str, *, reason: str = "invalid_token") -> Unauthorized:
    """A 401 for a credential that was sent but is not acceptable."""
    return Unauthorized(
        f"invalid credential: {description}; obtain a new token (or API key) and retry",
        reason=reason,
        details={"problem": description},
        headers={"WWW-Authenticate": challenge("invalid_token", description)},
    )


def credential_required(what: str) -> Unauthorized:
    """A 401 for a request that sent no credential where one is needed."""
    return Unauthorized(
        f"authentication required to {what}: send 'Authorization: Bearer <token>' or an API key",
        reason="unauthenticated",
        headers={"WWW-Authenticate": challenge()},
    )


def missing_grants(roles: Iterable[str], permissions: Iterable[str]) -> Forbidden:
    """A 403 that names every role and permission the caller lacks."""
    roles, permissions = sorted(roles), sorted(permissions)
    named = [f"role {r!r}" for r in roles] + [f"permission {p!r}" for p in permissions]
    return Forbidden(
        f"missing {', '.join(named)}; ask an administrator to grant it",
        details={"missing_roles": roles, "missing_permissions": permissions},
        headers={"WWW-Authenticate": challenge("insufficient_scope", scope=" ".join(permissions) or None)},
    )
