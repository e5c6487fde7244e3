"""Verify a compact JWS (a JWT) against known public keys, then check its claims.

Written against ``cryptography`` directly rather than through a JWT library so
that every rule is visible here, and because it is the cold path of every new
token. The order matters: structure, header (algorithm allow-list, ``kid``),
signature, and only then the claims — nothing in an unsigned payload is read.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Collection, Mapping
from typing import Any

import orjson

from meshkit.gateway.security.jwks import ALGORITHMS, EDDSA, VerifyKey

#: Longest token accepted: far above any real JWT, far below what could hurt.
MAX_TOKEN_LENGTH = 8192
# The signature may be empty here so that alg "none" is refused by name, not as "malformed".
_COMPACT = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")
_B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


class TokenError(Exception):
    """The token is not acceptable; ``str(exc)`` is a description safe to show the client."""


class UnknownKid(TokenError):
    """The token names a key the key set does not hold (yet)."""

    def __init__(self, kid: str) -> None:
        super().__init__(f"unknown signing key {kid!r}")
        self.kid = kid


def _b64decode(segment: str) -> bytes:
    if len(segment) % 4 == 1:
        raise TokenError("malformed token: bad base64url length")
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def _canonical_tail(segment: str) -> bool:
    # The unused low bits of the last character must be zero, or several strings
    # would decode to the same signature (and a tampered token would still pass).
    rem = len(segment) % 4
    if rem == 0:
        return True
    bits = _B64.index(segment[-1])
    return bits & (0x0F if rem == 2 else 0x03) == 0


def _number(claims: Mapping[str, Any], name: str) -> float | None:
    v = claims.get(name)
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise TokenError(f"claim '{name}' must be a number of seconds since the epoch")
    return float(v)


class TokenVerifier:
    """Checks signature and registered claims (``iss``, ``aud``, ``exp``, ``nbf``, ``iat``)."""

    def __init__(self, *, issuer: str, audience: str | Collection[str], leeway: float = 30.0) -> None:
        self.issuer = issuer
        self.audiences = frozenset([audience] if isinstance(audience, str) else audience)
        self.leeway = leeway

    def verify(self, token: str, keys: Mapping[str, VerifyKey], now: float) -> dict[str, Any]:
        """The claims of ``token`` if valid now; :class:`TokenError` (or :class:`UnknownKid`) if not."""
        if len(token) > MAX_TOKEN_LENGTH:
            raise TokenError("malformed token: too long")
        if not _COMPACT.fullmatch(token):
            raise TokenError("malformed token: expected three base64url segments")
        h64, p64, s64 = token.split(".")
        try:
            header = orjson.loads(_b64decode(h64))
        except (ValueError, orjson.JSONDecodeError) as exc:
            raise TokenError("malformed token: header is not base64url JSON") from exc
        if not isinstance(header, dict):
            raise TokenError("malformed token: header is not a JSON object")
        alg = header.get("alg")
        if alg not in ALGORITHMS:
            if isinstance(alg, str) and alg.lower() == "none":
                raise TokenError("unsigned tokens (alg 'none') are not accepted")
            raise TokenError(f"algorithm {alg!r} is not accepted; use RS256 or EdDSA")
        if alg == "Ed25519":
            alg = EDDSA
        if "crit" in header:
            raise TokenError("critical header extensions are not supported")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise TokenError("token header has no 'kid'")
        key = keys.get(kid)
        if key is None:
            raise UnknownKid(kid)
        if key.alg != alg:
            # e.g. an RS256 key asked to check an EdDSA signature, or the reverse.
            raise TokenError(f"key {kid!r} is for {key.alg}, token says {alg}")
        if not _canonical_tail(s64):
            raise TokenError("signature is invalid")
        signature = _b64decode(s64)
        if not key.verify(signature, f"{h64}.{p64}".encode("ascii")):
            raise TokenError("signature is invalid")
        try:
            claims = orjson.loads(_b64decode(p64))
        except (ValueError, orjson.JSONDecodeError) as exc:
            raise TokenError("malformed token: payload is not base64url JSON") from exc
        if not isinstance(claims, dict):
            raise TokenError("malformed token: payload is not a JSON object")
        self.check_claims(claims, now)
        return claims

    def check_claims(self, claims: Mapping[str, Any], now: float) -> None:
        """Registered-claim checks, with ``leeway`` seconds of tolerance for clock skew."""
        exp = _number(claims, "exp")
        if exp is None:
            raise TokenError("token has no 'exp': tokens must expire")
        if now > exp + self.leeway:
            raise TokenError("token has expired")
        nbf = _number(claims, "nbf")
        if nbf is not None and now + self.leeway < nbf:
            raise TokenError("token is not valid yet (nbf)")
        iat = _number(claims, "iat")
        if iat is not None and now + self.leeway < iat:
            raise TokenError("token is issued in the future (iat)")
        if claims.get("iss") != self.issuer:
            raise TokenError("token is from another issuer")
        aud = claims.get("aud")
        if isinstance(aud, str):
            ok = aud in self.audiences
        elif isinstance(aud, list):
            ok = any(isinstance(a, str) and a in self.audiences for a in aud)
        else:
            ok = False
        if not ok:
            raise TokenError("token is for another audience")
