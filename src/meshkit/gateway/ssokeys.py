"""API keys owned by the SSO, as the gateway's key source (``GATEWAY_API_KEYS_SERVICE``).

The gateway asks the service that owns API keys (the SSO, ``POST
/v1/apikeys/introspect``) what a key grants, through the platform's
:class:`~meshkit.basis.client.ServiceClient` (discovery, balancing, breakers),
and keeps each answer for ``GATEWAY_API_KEYS_CACHE_TTL`` seconds
(:class:`meshkit.sso_sdk.SsoApiKeys`): a key revoked at the SSO stops working
at every gateway within that time, and a busy key costs one SSO call per TTL.

When the SSO cannot answer (no instance registered, unreachable, too slow, a
5xx), a key that is not in the cache gets 503 ``apikeys_unavailable`` with
``Retry-After`` — never 401. An outage says nothing about the key: a 401 would
tell a partner's client that a good key is bad (some drop it, some page their
on-call), while 503 says "retry", which is true. Keys already in the cache keep
working until their entry expires; after that they get the same 503 (serving
stale answers longer would also keep serving keys revoked meanwhile).
"""

from __future__ import annotations

import logging
import time

from meshkit.basis.client import ServiceClient
from meshkit.basis.errors import Unavailable
from meshkit.sso_sdk import ApiKeyGrant, SsoApiKeys, SsoClient

log = logging.getLogger("meshkit.gateway.security")

#: Seconds an "unknown key" answer is kept (at most the TTL): short, so a new key works soon.
NEGATIVE_TTL = 2.0


class SsoKeySource:
    """An ``ApiKeySource`` (see :mod:`meshkit.gateway.security.apikeys`) that asks ``service``, cached.

    ::

        keys = SsoKeySource(view, service="sso", caller="gateway", ttl=10.0, timeout=2.0)
        auth = Authenticator(jwks_url=..., issuer=..., audience=..., api_keys=keys)
        ...
        await keys.close()      # closes its ServiceClient
    """

    def __init__(self, view, *, service: str, caller: str, ttl: float = 10.0, timeout: float = 2.0,
                 log_every: float = 5.0) -> None:
        self.service = service
        self.client = ServiceClient(view, caller=caller, timeout=timeout)
        self.keys = SsoApiKeys(SsoClient(self.client, service=service), ttl=ttl,
                               negative_ttl=min(ttl, NEGATIVE_TTL))
        #: Lookups that failed because the service did not answer (each one a 503).
        self.failures = 0
        self.log_every = log_every
        self._logged = float("-inf")

    async def lookup(self, key: str) -> ApiKeyGrant | None:
        """What ``key`` grants, ``None`` when unknown/revoked/expired; 503 when the service cannot say."""
        try:
            return await self.keys.lookup(key)
        except Exception as exc:
            self.failures += 1
            now = time.monotonic()
            if now - self._logged >= self.log_every:  # one line per few seconds during an outage, not per request
                self._logged = now
                log.warning("cannot check API keys at %r (%d failed lookup(s) so far): %s", self.service,
                            self.failures, getattr(exc, "message", None) or repr(exc))
            # The cause (instance addresses) stays in the log; the client learns only that it may retry.
            raise Unavailable("cannot check API keys right now: the key service did not answer; retry shortly",
                              reason="apikeys_unavailable", headers={"Retry-After": "1"}) from exc

    def forget(self) -> None:
        """Drop every cached answer (the next use of each key asks the service again)."""
        self.keys.forget()

    async def close(self) -> None:
        """Close the service client (its pooled connections to the SSO)."""
        await self.client.close()
