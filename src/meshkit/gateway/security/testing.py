"""Tokens and key sets for tests and benchmarks: a tiny issuer standing in for the SSO.

    issuer = TokenIssuer("EdDSA")                 # or "RS256"
    auth = Authenticator(jwks=issuer.jwks(), issuer=issuer.issuer, audience=issuer.audience)
    token = issuer.token("user-1", roles=["admin"], permissions=["catalog:write"])
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
from jwt.algorithms import OKPAlgorithm, RSAAlgorithm


def b64url(data: bytes) -> str:
    """Base64url without padding, as JWS wants it."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


class TokenIssuer:
    """One signing key (``RS256`` or ``EdDSA``) with its public JWK, minting tokens on demand."""

    def __init__(self, alg: str = "EdDSA", *, kid: str | None = None, issuer: str = "https://sso.meshkit.test",
                 audience: str = "meshkit", rsa_bits: int = 2048) -> None:
        if alg == "EdDSA":
            self.private_key: Any = ed25519.Ed25519PrivateKey.generate()
            self.jwk: dict[str, Any] = json.loads(OKPAlgorithm.to_jwk(self.private_key.public_key()))
        elif alg == "RS256":
            self.private_key = rsa.generate_private_key(public_exponent=65537, key_size=rsa_bits)
            self.jwk = json.loads(RSAAlgorithm.to_jwk(self.private_key.public_key()))
        else:
            raise ValueError(f"unsupported test algorithm {alg!r}")
        self.alg = alg
        self.kid = kid or f"{alg.lower()}-{uuid.uuid4().hex[:8]}"
        self.jwk.update(kid=self.kid, use="sig", alg=alg)
        self.issuer, self.audience = issuer, audience

    def jwks(self, *others: TokenIssuer) -> dict[str, Any]:
        """A JWKS document with this key (and ``others``)."""
        return {"keys": [self.jwk, *(o.jwk for o in others)]}

    def claims(self, sub: str = "user-1", *, ttl: float = 300, roles: list[str] | None = None,
               permissions: list[str] | None = None, **extra: Any) -> dict[str, Any]:
        """Standard claims valid for ``ttl`` seconds from now, plus ``extra`` (``None`` values removed)."""
        now = int(time.time())
        c: dict[str, Any] = {"iss": self.issuer, "aud": self.audience, "sub": sub, "iat": now, "nbf": now,
                             "exp": now + ttl, "jti": uuid.uuid4().hex}
        if roles is not None:
            c["roles"] = roles
        if permissions is not None:
            c["permissions"] = permissions
        c.update(extra)
        return {k: v for k, v in c.items() if v is not None}

    def token(self, sub: str = "user-1", *, headers: dict[str, Any] | None = None, **claims: Any) -> str:
        """A signed token; keyword arguments as in :meth:`claims`."""
        return self.sign(self.claims(sub, **claims), headers=headers)

    def sign(self, claims: dict[str, Any], *, headers: dict[str, Any] | None = None) -> str:
        """Sign exactly ``claims`` with this key (``kid`` set unless ``headers`` override it)."""
        return jwt.encode(claims, self.private_key, algorithm=self.alg, headers={"kid": self.kid, **(headers or {})})

    def sign_raw(self, header: dict[str, Any], payload: bytes) -> str:
        """Sign arbitrary header and payload bytes (for malformed-but-signed tokens)."""
        signing_input = f"{b64url(json.dumps(header).encode())}.{b64url(payload)}"
        if self.alg == "EdDSA":
            sig = self.private_key.sign(signing_input.encode())
        else:
            from cryptography.hazmat.primitives import hashes
            from cryptography.hazmat.primitives.asymmetric import padding

            sig = self.private_key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
        return f"{signing_input}.{b64url(sig)}"

    def public_pem(self) -> bytes:
        """The public key as PEM (what an HS/RS confusion attack uses as the HMAC secret)."""
        from cryptography.hazmat.primitives import serialization

        return self.private_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
