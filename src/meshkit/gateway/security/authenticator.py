"""Who is calling: bearer JWTs (checked locally against a JWKS) and API keys.

``await authenticator.authenticate(authorization, api_key)`` returns the caller's
:class:`~meshkit.basis.context.Identity`, ``None`` when no credential was sent,
or raises :class:`~meshkit.basis.errors.Unauthorized` (401, with an RFC 6750
``WWW-Authenticate`` challenge) for a bad one. When both an ``Authorization``
header and an API key are sent, the bearer token is the credential used.

``authenticator.authorize(identity, roles, permissions)`` then demands every
listed role and every listed permission (all of them, not any), raising
:class:`~meshkit.basis.errors.Forbidden` naming what is missing.

The cost of a request with a known token is one cache lookup; a new token costs
one signature check (tens of µs), an unknown ``kid`` at most one JWKS refetch
per ``jwks_min_refetch`` seconds. Identities handed out are shared with the
cache: treat them as read-only.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Collection, Iterable
from typing import Any

from meshkit.basis.context import Identity
from meshkit.basis.errors import ConfigError, Unauthorized, Unavailable
from meshkit.gateway.security.apikeys import ApiKeySource, FileApiKeys
from meshkit.gateway.security.cache import TokenCache
from meshkit.gateway.security.challenge import credential_required, invalid_token, missing_grants
from meshkit.gateway.security.claims import header_problem, identity_from_claims
from meshkit.gateway.security.jwks import Fetch, JwksSource
from meshkit.gateway.security.revocation import RevocationList, follow
from meshkit.gateway.security.throttle import FailureThrottle
from meshkit.gateway.security.tokens import TokenError, TokenVerifier, UnknownKid

log = logging.getLogger("meshkit.gateway.security")


class Authenticator:
    """Verifies credentials and checks grants. Build one per gateway, in ``main``."""

    def __init__(
        self,
        *,
        jwks_url: str | None = None,
        jwks: dict[str, Any] | None = None,
        issuer: str | None = None,
        audience: str | Collection[str] | None = None,
        leeway: float = 30.0,
        api_keys_file: str | None = None,
        api_keys: ApiKeySource | None = None,
        cache_size: int = 10_000,
        jwks_min_refetch: float = 30.0,
        jwks_max_age: float = 300.0,
        jwks_timeout: float = 5.0,
        jwks_fetch: Fetch | None = None,
        failure_rate: float = 10.0,
        failure_burst: int = 100,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.tokens_enabled = jwks_url is not None or jwks is not None
        if self.tokens_enabled and (not issuer or not audience):
            raise ConfigError("set both issuer and audience for bearer tokens: "
                              "without them a token minted for another service would pass")
        if api_keys is not None and api_keys_file is not None:
            raise ConfigError("give api_keys or api_keys_file, not both")
        self.jwks = JwksSource(jwks_url, jwks, min_refetch=jwks_min_refetch, max_age=jwks_max_age,
                               timeout=jwks_timeout, fetch=jwks_fetch)
        self.verifier = TokenVerifier(issuer=issuer or "", audience=audience or (), leeway=leeway)
        self.api_keys: ApiKeySource | None = FileApiKeys(api_keys_file) if api_keys_file else api_keys
        self.cache = TokenCache(cache_size)
        #: Failed authentications per client address (see :mod:`~meshkit.gateway.security.throttle`).
        self.throttle = FailureThrottle(failure_rate, failure_burst)
        #: The signing keys the cached tokens were checked against (see _keys_changed).
        self._keys = self.jwks.keys
        self.revoked = RevocationList(clock=clock)
        self._clock = clock
        self._nats: Any = None
        self.hits = 0
        self.misses = 0

    async def start(self) -> None:
        """Fetch the JWKS now instead of on the first token (a failure is logged, not raised)."""
        if self.jwks.url is not None:
            await self.jwks.refresh()

    def cached(self, authorization: bytes) -> Identity | None:
        """The identity of an ``Authorization: Bearer`` header whose token is cached, else ``None``.

        The proxy's hot path: no coroutine, one dict lookup. ``None`` means "not
        known yet" (call :meth:`authenticate`), never "anonymous"; a cached token
        revoked since raises like :meth:`authenticate` does.
        """
        if authorization[:7] != b"Bearer ":
            return None
        if self.jwks.keys is not self._keys:
            self._keys_changed()
        token = authorization[7:].decode("latin-1")
        identity = self.cache.get(token, self._clock())
        if identity is None:
            return None
        if identity.token_id is not None and identity.token_id in self.revoked:
            self.cache.discard(token)
            raise invalid_token("token has been revoked")
        self.hits += 1
        return identity

    async def authenticate(self, authorization: str | None, api_key: str | None,
                           client: str | None = None) -> Identity | None:
        """The caller's identity, ``None`` without credential, ``Unauthorized`` for a bad one.

        With ``client`` (its address), a credential that must be checked is refused with 429
        once that address spent its budget of failed authentications (see :attr:`throttle`).
        """
        if authorization:
            if authorization.startswith("Bearer "):
                token = authorization[7:].strip()
            else:
                scheme, _, token = authorization.strip().partition(" ")
                if scheme.lower() != "bearer":
                    raise invalid_token("unsupported authorization scheme; use 'Bearer <token>'")
                token = token.strip()
            now = self._clock()
            if self.jwks.keys is not self._keys:
                self._keys_changed()
            identity = self.cache.get(token, now)
            if identity is not None:
                if identity.token_id is not None and identity.token_id in self.revoked:
                    self.cache.discard(token)
                    raise invalid_token("token has been revoked")
                self.hits += 1
                return identity
            self.misses += 1
            if client is None:
                return await self._verify(token, now)
            self.throttle.check(client)
            try:
                return await self._verify(token, now)
            except Unauthorized:
                self.throttle.failed(client)
                raise
        if api_key:
            if client is None:
                return await self._api_key(api_key)
            self.throttle.check(client)
            try:
                return await self._api_key(api_key)
            except Unauthorized:
                self.throttle.failed(client)
                raise
        return None

    def _keys_changed(self) -> None:
        """The JWKS was refetched: when a key was withdrawn (rotated out, or compromised), forget
        every cached token, so that those it signed are checked again (and refused). Cached, they
        stayed valid until their own ``exp``, which whoever holds a stolen key chooses."""
        keys = self.jwks.keys
        if self._keys.keys() - keys.keys():
            self.cache.clear()
        self._keys = keys

    async def _verify(self, token: str, now: float) -> Identity:
        if not self.tokens_enabled:
            raise invalid_token("bearer tokens are not accepted here; use an API key")
        self.jwks.refresh_if_stale()
        try:
            try:
                claims = self.verifier.verify(token, self.jwks.keys, now)
            except UnknownKid as exc:
                await self.jwks.lookup_missing(exc.kid)
                if not self.jwks.loaded:
                    raise Unavailable(
                        "cannot check tokens: the signing keys (JWKS) could not be fetched; retry shortly",
                        reason="jwks_unavailable",  # the cause (maybe internal addresses) is in the log only
                        headers={"Retry-After": "1"},
                    ) from exc
                now = self._clock()
                claims = self.verifier.verify(token, self.jwks.keys, now)
            identity = identity_from_claims(claims)
        except TokenError as exc:
            raise invalid_token(str(exc)) from None
        if identity.token_id is not None and identity.token_id in self.revoked:
            raise invalid_token("token has been revoked")
        self.cache.put(token, identity, float(claims["exp"]), now)
        return identity

    async def _api_key(self, key: str) -> Identity:
        if self.api_keys is None:
            raise invalid_token("API keys are not accepted here; use a bearer token")
        record = await self.api_keys.lookup(key)
        if record is None:
            raise invalid_token("unknown API key")
        if record.expires is not None and self._clock() >= record.expires:
            raise invalid_token("API key has expired")
        problem = (header_problem("subject", record.subject) or header_problem("roles", items=record.roles)
                   or header_problem("permissions", items=record.permissions)
                   or header_problem("tenant", record.tenant or "") or header_problem("id", record.key_id or ""))
        if problem:  # what the upstream would read is not what the key grants: refuse rather than pass it on
            log.error("API key %s refused: its %s", record.key_id, problem)
            raise invalid_token("API key's grants cannot be passed on; see the gateway's log")
        return Identity(subject=record.subject, roles=record.roles, permissions=record.permissions,
                        token_id=record.key_id, tenant=record.tenant, kind="apikey")

    def authorize(self, identity: Identity | None, roles: Iterable[str] = (), permissions: Iterable[str] = ()) -> None:
        """Demand every role and permission listed: 401 without identity, 403 naming what is missing."""
        roles, permissions = tuple(roles), tuple(permissions)
        if not roles and not permissions:
            return
        if identity is None:
            raise credential_required("use this route")
        missing_roles = [r for r in roles if r not in identity.roles]
        missing_perms = [p for p in permissions if p not in identity.permissions]
        if missing_roles or missing_perms:
            raise missing_grants(missing_roles, missing_perms)

    def revoke(self, jti: str, until: float | None = None) -> None:
        """Reject token id ``jti`` from now on (until ``until``, its ``exp``), cached or not.

        O(1): a cached entry of a revoked token is dropped when it is next presented.
        """
        self.revoked.add(jti, until)

    async def follow_revocations(self, nats_url: str | Any, *, replay_timeout: float = 5.0,
                                 connect_timeout: float = 10.0) -> None:
        """Apply the SSO's token revocations (JetStream stream ``SSO``, ``sso.token.revoked``).

        Replays the stream (every revocation of a token that may still be alive) and
        returns once those are applied, then keeps applying new ones as they are
        published. Each is refused until the token's ``exp`` plus the verifier's
        leeway. ``nats_url`` is a URL (a connection is opened, and closed by
        :meth:`close`) or an already connected ``nats.aio.client.Client``;
        :class:`Unavailable` when NATS does not answer within ``connect_timeout``.
        """
        import asyncio
        import contextlib

        opened: Any = None
        if isinstance(nats_url, str):
            import nats

            try:
                # nats-py retries a first connection forever when reconnects are unlimited: bound it.
                opened = await asyncio.wait_for(nats.connect(
                    nats_url, name="meshkit-gateway-revocations", max_reconnect_attempts=-1, connect_timeout=2),
                    connect_timeout)
            except (TimeoutError, OSError) as exc:
                raise Unavailable(f"NATS at {nats_url} did not answer within {connect_timeout:g} s: token "
                                  "revocations are not followed yet", reason="nats_unavailable") from exc
        nc = opened if opened is not None else nats_url
        try:
            follower = await follow(nc, self.revoked, grace=self.verifier.leeway, replay_timeout=replay_timeout)
        except BaseException:
            if opened is not None:
                with contextlib.suppress(Exception):
                    await opened.close()
            raise
        self._revocation_follower = follower
        if opened is not None:
            self._nats = opened

    async def close(self) -> None:
        """Stop a JWKS fetch under way; stop following revocations and close the NATS connection of
        :meth:`follow_revocations`."""
        import contextlib

        await self.jwks.close()
        # getattr with a default: set by follow_revocations only (and this class may be compiled by mypyc)
        follower = getattr(self, "_revocation_follower", None)
        if follower is not None:
            self._revocation_follower = None
            with contextlib.suppress(Exception):
                await follower.stop()
        if self._nats is not None:
            nc, self._nats = self._nats, None
            await nc.close()
