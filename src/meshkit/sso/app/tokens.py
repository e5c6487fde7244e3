"""Access tokens (signed JWTs) and refresh tokens (opaque, hashed, rotated), and their revocation.

Access token claims: ``iss``, ``aud``, ``sub``, ``exp``, ``iat``, ``nbf``,
``jti``, ``roles``, ``permissions`` (only what the roles grant *without*
condition), ``client_kind`` (``user``/``service``), ``tenant`` when set,
``sid`` (the session = refresh-token family) for users, ``scope`` for
client-credentials tokens. The header names the key (``kid``) and ``alg``.

Refresh tokens are 256-bit random strings; only their SHA-256 is stored (a
fast hash is right for a random secret: there is nothing to guess). Each use
marks the token used and issues a new one in the same family; presenting a
used token again means it was copied, so the whole family is revoked and every
access token issued in it is published as revoked (theft detection).
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt

from meshkit.basis.errors import Unauthorized
from meshkit.sso.app.keyring import KeyRing
from meshkit.sso.app.ports import Publisher, TokenStore
from meshkit.sso.domain import AuditEntry, RefreshToken, new_id


def token_hash(raw: str) -> str:
    """SHA-256 hex of a random secret (refresh token, API key, client secret)."""
    return hashlib.sha256(raw.encode("utf-8")).hexdigest()


def invalid_grant(message: str = "the refresh token is invalid, expired or revoked; log in again") -> Unauthorized:
    return Unauthorized(message, reason="invalid_grant")


#: Seconds a token still verifies past its ``exp`` (clock skew); a revocation lasts that long too.
LEEWAY = 30.0


class Tokens:
    """Mints and checks tokens; revokes sessions and publishes revocations."""

    def __init__(self, keys: KeyRing, store: TokenStore, publisher: Publisher, *, issuer: str, audience: str,
                 access_ttl: float = 900.0, refresh_ttl: float = 30 * 86400.0, leeway: float = LEEWAY,
                 session_max: float = 0.0, clock: Callable[[], float] = time.time) -> None:
        self.keys = keys
        self._store = store
        self._publisher = publisher
        self.issuer, self.audience = issuer, audience
        self.access_ttl, self.refresh_ttl, self.leeway = access_ttl, refresh_ttl, leeway
        #: Longest a session may last from its login however often it is refreshed (0: no limit).
        self.session_max = session_max
        self._clock = clock
        self._revoked: dict[str, float] = {}

    def now(self) -> float:
        """The clock tokens are dated with (epoch seconds)."""
        return self._clock()

    # -- access tokens -------------------------------------------------------------------

    def mint(self, subject: str, *, roles: list[str], permissions: list[str], kind: str = "user",
             tenant: str | None = None, sid: str | None = None, scope: str | None = None,
             ttl: float | None = None) -> tuple[str, str, float]:
        """A signed access token: ``(token, jti, exp)``."""
        now = int(self._clock())
        exp = now + int(ttl or self.access_ttl)
        jti = secrets.token_hex(16)
        claims: dict[str, Any] = {"iss": self.issuer, "aud": self.audience, "sub": subject, "iat": now, "nbf": now,
                                  "exp": exp, "jti": jti, "roles": sorted(roles), "permissions": sorted(permissions),
                                  "client_kind": kind}
        if tenant:
            claims["tenant"] = tenant
        if sid:
            claims["sid"] = sid
        if scope is not None:
            claims["scope"] = scope
        kid, alg, private = self.keys.signing_key()
        return jwt.encode(claims, private, algorithm=alg, headers={"kid": kid, "typ": "at+jwt"}), jti, float(exp)

    def verify(self, token: str) -> dict[str, Any]:
        """The claims of one of our own valid, unrevoked access tokens; 401 ``invalid_token`` otherwise."""
        try:
            header = jwt.get_unverified_header(token)
            found = self.keys.public_key(header.get("kid") or "")
            if found is None or header.get("alg") != found[0]:
                raise jwt.InvalidTokenError("unknown signing key")
            claims = jwt.decode(token, found[1], algorithms=[found[0]], audience=self.audience, issuer=self.issuer,
                                leeway=self.leeway, options={"require": ["exp", "iat", "nbf", "sub", "jti"]})
        except jwt.InvalidTokenError as exc:
            raise Unauthorized(f"the access token is not valid ({exc}); log in again", reason="invalid_token",
                               headers={"WWW-Authenticate": 'Bearer error="invalid_token"'}) from None
        if self.is_revoked(claims["jti"]):
            raise Unauthorized("the access token has been revoked; log in again", reason="invalid_token",
                               headers={"WWW-Authenticate": 'Bearer error="invalid_token"'})
        return claims

    def is_revoked(self, jti: str) -> bool:
        """True while the token ``jti`` is revoked and would otherwise still verify (``exp`` + leeway)."""
        exp = self._revoked.get(jti)
        return exp is not None and exp + self.leeway > self._clock()

    def _accepted(self, exp: float) -> bool:
        # A token verifies until exp + leeway: until then its revocation must be kept.
        return exp + self.leeway > self._clock()

    def remember(self, jti: str, exp: float) -> None:
        """Note a revocation made elsewhere (another SSO instance, via the bus)."""
        if self._accepted(exp):
            self._revoked[jti] = max(exp, self._revoked.get(jti, 0.0))

    async def load_revocations(self) -> None:
        """Remember the revocations stored before a restart."""
        self._revoked.update(dict(await self._store.revocations(self._clock() - self.leeway)))

    async def revoke_access(self, jti: str, exp: float) -> None:
        """Revoke one access token: stored, remembered, published to every gateway."""
        if not self._accepted(exp):
            return  # past exp + leeway: rejected everywhere anyway
        self._revoked[jti] = exp
        await self._store.add_revocation(jti, exp)
        await self._publisher.revoked(jti, exp)

    async def issue_machine(self, subject: str, *, roles: list[str], permissions: list[str], tenant: str | None,
                            scope: str) -> tuple[str, float]:
        """A client-credentials access token, remembered so :meth:`revoke_subject` can revoke it: ``(token, exp)``."""
        token, jti, exp = self.mint(subject, roles=roles, permissions=permissions, kind="service", tenant=tenant,
                                    scope=scope)
        now = datetime.fromtimestamp(self._clock(), UTC)
        await self._store.add_issued(jti, subject, exp, AuditEntry(subject, "token.issued", subject, now,
                                                                   {"grant": "client_credentials", "scope": scope}))
        return token, exp

    async def revoke_subject(self, subject: str) -> int:
        """Revoke every live token issued to service account ``subject``; returns how many."""
        live = await self._store.issued(subject, self._clock() - self.leeway)
        for jti, exp in live:
            await self.revoke_access(jti, exp)
        return len(live)

    # -- sessions (refresh-token families) ------------------------------------------------

    async def open_session(self, subject: str, *, roles: list[str], permissions: list[str],
                           tenant: str | None = None, details: dict[str, Any] | None = None) -> dict[str, Any]:
        """A new session: an access token and the first refresh token of a new family.

        Audited (``session.opened``, the family as target, ``details`` such as the client's
        address) in the transaction that stores the refresh token.
        """
        family = new_id("ses")
        now = datetime.fromtimestamp(self._clock(), UTC)
        audit = AuditEntry(subject, "session.opened", family, now, details or {})
        return await self._issue(subject, family, roles, permissions, tenant, audit)

    async def _issue(self, subject: str, family: str, roles: list[str], permissions: list[str],
                     tenant: str | None, audit: AuditEntry | None = None) -> dict[str, Any]:
        pair, record = self._pair(subject, family, roles, permissions, tenant)
        await self._store.add(record, audit)
        return pair

    def _pair(self, subject: str, family: str, roles: list[str], permissions: list[str],
              tenant: str | None) -> tuple[dict[str, Any], RefreshToken]:
        """A new access token and refresh token of ``family``, and the record to store for the latter."""
        access, jti, exp = self.mint(subject, roles=roles, permissions=permissions, tenant=tenant, sid=family)
        raw = secrets.token_urlsafe(32)
        now = datetime.fromtimestamp(self._clock(), UTC)
        record = RefreshToken(id=new_id("rt"), token_hash=token_hash(raw), family=family, subject=subject,
                              issued_at=now, expires_at=now + timedelta(seconds=self.refresh_ttl), access_jti=jti,
                              access_exp=exp)
        pair = {"access_token": access, "refresh_token": raw, "token_type": "Bearer",
                "expires_in": int(exp - int(self._clock()))}
        return pair, record

    async def rotate(self, raw: str, claims_for: Callable[[str], Any]) -> dict[str, Any]:
        """Use refresh token ``raw`` once: a new pair in the same family, or 401 ``invalid_grant``.

        ``claims_for(subject)`` is ``async -> (roles, permissions, tenant)`` and
        raises when the subject may no longer have tokens (disabled). A reused
        token revokes its family.
        """
        if not isinstance(raw, str) or not 20 <= len(raw) <= 200:
            raise invalid_grant()
        record = await self._store.by_hash(token_hash(raw))
        now = datetime.fromtimestamp(self._clock(), UTC)
        if record is None or record.revoked_at is not None or record.expires_at <= now:
            raise invalid_grant()
        if record.used_at is None:
            try:
                roles, permissions, tenant = await claims_for(record.subject)
            except Unauthorized:
                await self.revoke_family(record.family, "system", "session.ended", {"why": "subject disabled"})
                raise invalid_grant() from None
            cap = None
            if self.session_max > 0:  # however often refreshed, a session ends session_max after its login
                started = await self._store.family_started(record.family) or record.issued_at
                cap = started + timedelta(seconds=self.session_max)
                if cap <= now:
                    raise invalid_grant("this session has reached its maximum length; log in again")
            # Spent and replaced in one transaction, after everything that may fail: a database error
            # (a 503 the client retries) leaves the token as it was. Spent first, the retry was "reuse".
            pair, successor = self._pair(record.subject, record.family, roles, permissions, tenant)
            if cap is not None and successor.expires_at > cap:
                successor.expires_at = cap
            if await self._store.use(record.id, now, successor):
                return pair
        await self.revoke_family(record.family, "system:reuse-detection", "session.reuse_detected",
                                 {"subject": record.subject})
        raise invalid_grant("this refresh token was already used: the session has been ended for safety; "
                            "log in again")

    async def family_of(self, raw: str) -> RefreshToken | None:
        """The stored record of refresh token ``raw`` (any state), or ``None``."""
        if not isinstance(raw, str) or not 20 <= len(raw) <= 200:
            return None
        return await self._store.by_hash(token_hash(raw))

    async def revoke_family(self, family: str, actor: str, action: str = "session.revoked",
                            details: dict[str, Any] | None = None) -> int:
        """End a session: its refresh tokens and every access token issued in it. Returns how many were published."""
        now = datetime.fromtimestamp(self._clock(), UTC)
        issued = await self._store.revoke_family(family, now, AuditEntry(actor, action, family, now, details or {}))
        count = 0
        for jti, exp in issued:
            if self._accepted(exp) and not self.is_revoked(jti):
                await self.revoke_access(jti, exp)
                count += 1
        return count

    async def revoke_sessions(self, subject: str, actor: str, *, keep: str | None = None) -> int:
        """End every session of ``subject`` except ``keep``; returns how many were ended."""
        families = [f for f in await self._store.families(subject) if f != keep]
        for family in families:
            await self.revoke_family(family, actor, "session.revoked", {"subject": subject})
        return len(families)

    async def prune(self) -> int:
        """Forget expired refresh tokens and revocations of expired tokens."""
        now = self._clock()
        self._revoked = {j: e for j, e in self._revoked.items() if e + self.leeway > now}
        return await self._store.prune(datetime.fromtimestamp(now, UTC), now - self.leeway)
