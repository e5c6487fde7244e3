"""An API-key source for the gateway that asks the SSO, with a small cache.

It has the shape of ``meshkit.gateway.security.ApiKeySource``: ``await
lookup(key)`` returns a record with ``key_hash``, ``subject``, ``roles``,
``permissions``, ``tenant``, ``expires`` (epoch seconds or ``None``) and
``key_id`` — or ``None`` for an unknown, revoked or expired key::

    keys = SsoApiKeys(SsoClient(service_client), ttl=10.0)
    auth = Authenticator(jwks_url=..., issuer=..., audience=..., api_keys=keys)

Answers are cached by the key's SHA-256 for ``ttl`` seconds (``negative_ttl``
for unknown keys), so a revoked key stops working within ``ttl``.
"""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class ApiKeyGrant:
    """What a live API key grants (field names as the gateway's ``ApiKeyRecord``)."""

    key_hash: str
    subject: str
    roles: frozenset[str] = frozenset()
    permissions: frozenset[str] = frozenset()
    tenant: str | None = None
    expires: float | None = None
    key_id: str | None = None


class SsoApiKeys:
    """Looks API keys up at the SSO (``POST /v1/apikeys/introspect``), caching answers."""

    def __init__(self, sso: Any, *, ttl: float = 10.0, negative_ttl: float = 2.0, max_entries: int = 10_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._sso = sso
        self.ttl, self.negative_ttl, self.max_entries = ttl, negative_ttl, max_entries
        self._clock = clock
        self._cache: OrderedDict[str, tuple[float, ApiKeyGrant | None]] = OrderedDict()

    async def lookup(self, key: str) -> ApiKeyGrant | None:
        digest = hashlib.sha256(key.encode("utf-8")).hexdigest()
        now = self._clock()
        hit = self._cache.get(digest)
        if hit is not None and hit[0] > now:
            return hit[1]
        info = await self._sso.introspect_api_key(key)
        grant = None
        if info.active and info.subject:
            grant = ApiKeyGrant(key_hash=digest, subject=info.subject, roles=frozenset(info.roles),
                                permissions=frozenset(info.permissions), tenant=info.tenant, expires=info.exp,
                                key_id=info.key_id)
        self._cache[digest] = (now + (self.ttl if grant else self.negative_ttl), grant)
        self._cache.move_to_end(digest)
        while len(self._cache) > self.max_entries:
            self._cache.popitem(last=False)
        return grant

    def forget(self) -> None:
        """Drop every cached answer."""
        self._cache.clear()
