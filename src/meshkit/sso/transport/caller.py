"""Who is calling the SSO, and from where.

The SSO verifies its own bearer tokens (it holds the keys), so a call made
directly — not through the gateway — is authenticated just the same. Without
an ``Authorization`` header it falls back to the identity the gateway injected
(e.g. for an API key, which the gateway checked and stripped).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request

from meshkit.basis.context import Identity
from meshkit.basis.errors import Forbidden, Unauthorized
from meshkit.basis.policy import permission_matches
from meshkit.basis.web import identity as injected
from meshkit.sso.app import ADMIN_PERMISSION, Tokens


@dataclass(slots=True)
class Caller:
    """The caller's identity and, for one of our bearer tokens, its verified claims."""

    identity: Identity
    claims: dict[str, Any] | None = None

    @property
    def session(self) -> str | None:
        return (self.claims or {}).get("sid")

    @property
    def exp(self) -> float | None:
        exp = (self.claims or {}).get("exp")
        return float(exp) if exp is not None else None


def caller(request: Request, tokens: Tokens) -> Caller | None:
    """The caller, ``None`` when anonymous; 401 for a bad or revoked bearer token."""
    header = request.headers.get("authorization")
    if header:
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthorized("use 'Authorization: Bearer <access token>'", reason="invalid_token")
        return caller_of_token(token.strip(), tokens)
    who = injected(request)
    return Caller(who) if who is not None else None


def caller_of_token(token: str, tokens: Tokens) -> Caller:
    """The caller one of our access tokens names; 401 ``invalid_token`` when it is not valid or revoked."""
    claims = tokens.verify(token)
    identity = Identity(subject=claims["sub"], roles=frozenset(claims.get("roles") or ()),
                        permissions=frozenset(claims.get("permissions") or ()), token_id=claims.get("jti"),
                        tenant=claims.get("tenant"), kind=claims.get("client_kind", "user"))
    return Caller(identity, claims)


def require_caller(request: Request, tokens: Tokens) -> Caller:
    found = caller(request, tokens)
    if found is None:
        raise Unauthorized("log in first and send 'Authorization: Bearer <access token>'", reason="credential_required",
                           headers={"WWW-Authenticate": 'Bearer realm="meshkit"'})
    return found


def require_admin(request: Request, tokens: Tokens) -> Caller:
    """The caller, who must hold ``sso:admin`` in a bearer token of ours (401 without one, 403 otherwise).

    Not an identity in headers: whoever reaches the SSO directly (any process on the
    network, past the gateway that strips them) could write ``x-meshkit-permissions:
    sso:admin`` and administer every identity. The SSO holds the keys: it checks the token.
    """
    found = require_caller(request, tokens)
    if found.claims is None:
        raise Unauthorized("the admin API needs 'Authorization: Bearer <access token>' (an identity in headers "
                           "is not enough here)", reason="credential_required",
                           headers={"WWW-Authenticate": 'Bearer realm="meshkit"'})
    if not any(permission_matches(p, ADMIN_PERMISSION) for p in found.identity.permissions):
        raise Forbidden(f"this needs the permission {ADMIN_PERMISSION!r}", reason="missing_permission",
                        details={"missing_permissions": [ADMIN_PERMISSION]})
    return found


#: Where the proxies that may speak for a client (the gateway) can be: loopback and private networks.
PRIVATE_NETWORKS = ("127.0.0.0/8", "::1/128", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7")
#: The same, parsed.
PRIVATE = tuple(ipaddress.ip_network(n) for n in PRIVATE_NETWORKS)


def client_ip(request: Request, trusted_proxies: int,
              proxy_networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = PRIVATE) -> str:
    """The client's address: the entry ``trusted_proxies`` from the end of ``X-Forwarded-For``.

    The gateway appends the address it saw; anything before it the client may
    have written itself, so it is not trusted. And only a peer inside
    ``proxy_networks`` (where the gateway runs) is heard on the matter at all: a
    caller reaching the SSO directly would otherwise choose its own address, and
    with it dodge the per-address login throttle and write what it likes in the audit.
    """
    peer = request.client.host if request.client else "unknown"
    if trusted_proxies <= 0 or not _inside(peer, proxy_networks):
        return peer
    hops = [h.strip() for h in request.headers.get("x-forwarded-for", "").split(",") if h.strip()]
    if len(hops) >= trusted_proxies:
        return hops[-trusted_proxies]
    return peer


def _inside(address: str, networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in n for n in networks)
