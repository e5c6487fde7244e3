"""The gateway's security layer: who is calling (JWTs, API keys), what they may do, how often.

Public surface::

    auth = Authenticator(jwks_url=..., issuer=..., audience=..., api_keys_file=...)
    identity = await auth.authenticate(request_authorization, request_x_api_key)  # None / Identity / 401
    auth.authorize(identity, roles=(...), permissions=(...))                     # 401 / 403
    auth.revoke(jti, until=exp); await auth.follow_revocations(nats_url)

    limiter = open_rate_limiter("memory://")          # or "redis://127.0.0.1:6379/0"
    decision = await limiter.hit(key, rate, burst)    # RateDecision; .headers(), .error()
"""

from meshkit.basis.context import Identity
from meshkit.gateway.security.apikeys import ApiKeyRecord, ApiKeySource, FileApiKeys, hash_key
from meshkit.gateway.security.authenticator import Authenticator
from meshkit.gateway.security.bucket import MemoryRateLimiter
from meshkit.gateway.security.challenge import challenge
from meshkit.gateway.security.claims import identity_from_claims
from meshkit.gateway.security.ratelimit import RateDecision, RateLimiter, open_rate_limiter
from meshkit.gateway.security.revocation import RevocationList

__all__ = [
    "ApiKeyRecord",
    "ApiKeySource",
    "Authenticator",
    "FileApiKeys",
    "Identity",
    "MemoryRateLimiter",
    "RateDecision",
    "RateLimiter",
    "RevocationList",
    "challenge",
    "hash_key",
    "identity_from_claims",
    "open_rate_limiter",
]
