"""Signing keys: made, sealed, rotated, published.

Three keys are published in the JWKS at any time:

- ``next`` — made one rotation ahead, published but not signing yet, so every
  gateway already holds it (its cached JWKS) when it starts signing;
- ``current`` — signs every new token;
- ``previous`` — the one before, still verifying tokens issued before the
  rotation until they expire.

A rotation (on schedule, every ``rotation_interval``, or on demand) moves each
key one step: next → current, current → previous, previous → retired (dropped
from the JWKS), and makes a new next. ``emergency=True`` (a leaked key) retires
the current key at once instead of keeping it as previous: tokens it signed stop
verifying as soon as gateways refresh their JWKS.

Private keys are sealed (AES-GCM, see ``adapters.crypto``) before they reach
the store and unsealed only in memory; they never appear in logs or answers.
"""

from __future__ import annotations

import contextlib
import json
import secrets
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
from jwt.algorithms import OKPAlgorithm, RSAAlgorithm

from meshkit.basis.errors import Conflict, Unavailable
from meshkit.sso.app.ports import KeyStore, Sealer
from meshkit.sso.domain import AuditEntry, SigningKey

PUBLISHED = ("next", "current", "previous")


def _utcnow() -> datetime:
    return datetime.now(UTC)


def generate(alg: str) -> tuple[Any, dict[str, Any]]:
    """A new private key for ``alg`` (``EdDSA`` or ``RS256``) and its public JWK."""
    if alg == "EdDSA":
        private: Any = ed25519.Ed25519PrivateKey.generate()
        jwk = json.loads(OKPAlgorithm.to_jwk(private.public_key()))
    elif alg == "RS256":
        private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        jwk = json.loads(RSAAlgorithm.to_jwk(private.public_key()))
    else:
        raise ValueError(f"unsupported signing algorithm {alg!r}: use EdDSA or RS256")
    return private, jwk


class KeyRing:
    """The SSO's signing keys, loaded from a :class:`KeyStore`, sealed by a :class:`Sealer`."""

    def __init__(self, store: KeyStore, sealer: Sealer, *, alg: str = "EdDSA",
                 rotation_interval: float = 7 * 24 * 3600.0, token_ttl: float = 0.0,
                 clock: Callable[[], datetime] = _utcnow) -> None:
        self._store = store
        self._sealer = sealer
        self.alg = alg
        self.rotation_interval = rotation_interval
        #: How long a token verifies after it was signed (access TTL + leeway): the previous key is
        #: kept published at least that long after it stopped signing.
        self.token_ttl = token_ttl
        self._clock = clock
        self._keys: list[SigningKey] = []
        self._private: dict[str, Any] = {}
        self._public: dict[str, Any] = {}

    async def load(self) -> None:
        """Read the keys; on first start make a current and a next key."""
        keys = await self._store.all()
        if not any(k.state == "current" for k in keys):
            now = self._clock()
            current, nxt = self._new("current", now), self._new("next", now)
            try:
                await self._store.save_all([current, nxt], AuditEntry("system", "keys.created", current.kid, now,
                                                                      {"alg": self.alg, "next": nxt.kid}))
            except Conflict:
                pass  # another instance starting at the same time made the first keys: use those
            keys = await self._store.all()
        self._install(keys)
        self.signing_key()  # unseal now: a wrong key-encryption key fails the start, not the first login
        if self.current.alg != self.alg:
            # SSO_SIGNING_ALG changed: sign with it from now on (the old key verifies its tokens as previous);
            # if the previous key is still needed, the scheduled check does it as soon as it is not.
            with contextlib.suppress(Conflict):
                await self.rotate("system:alg-change")

    def _new(self, state: str, now: datetime) -> SigningKey:
        private, jwk = generate(self.alg)
        kid = f"{self.alg.lower()}-{now:%Y%m%d}-{secrets.token_hex(4)}"
        jwk.update(kid=kid, use="sig", alg=self.alg)
        der = private.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption())
        sealed = self._sealer.seal(der, context=kid.encode())
        self._private[kid] = private
        return SigningKey(kid=kid, alg=self.alg, public_jwk=jwk, sealed_private=sealed, state=state,
                          created_at=now, activated_at=now if state == "current" else None)

    def _install(self, keys: list[SigningKey]) -> None:
        self._keys = keys
        self._public = {}
        for k in keys:
            if k.state in PUBLISHED:
                self._public[k.kid] = (OKPAlgorithm if k.alg == "EdDSA" else RSAAlgorithm).from_jwk(k.public_jwk)

    @property
    def current(self) -> SigningKey:
        for k in self._keys:
            if k.state == "current":
                return k
        raise Unavailable("no signing key is loaded yet; retry in a moment", reason="keys_not_loaded")

    def signing_key(self) -> tuple[str, str, Any]:
        """``(kid, alg, private key)`` of the current key (unsealed once, then kept in memory)."""
        k = self.current
        private = self._private.get(k.kid)
        if private is None:
            der = self._sealer.open(k.sealed_private, context=k.kid.encode())
            private = self._private[k.kid] = serialization.load_der_private_key(der, password=None)
        return k.kid, k.alg, private

    def public_key(self, kid: str) -> tuple[str, Any] | None:
        """``(alg, public key)`` of a published key, or ``None``."""
        key = self._public.get(kid)
        if key is None:
            return None
        return next(k.alg for k in self._keys if k.kid == kid), key

    def jwks(self) -> dict[str, Any]:
        """The JWKS document: current, next and previous public keys (never a private part)."""
        order = {s: i for i, s in enumerate(("current", "next", "previous"))}
        published = sorted((k for k in self._keys if k.state in PUBLISHED), key=lambda k: order[k.state])
        return {"keys": [dict(k.public_jwk) for k in published]}

    def states(self) -> list[dict[str, Any]]:
        """Each key's kid, alg, state and dates (for the admin API)."""
        return [{"kid": k.kid, "alg": k.alg, "state": k.state, "created_at": k.created_at,
                 "activated_at": k.activated_at, "retired_at": k.retired_at} for k in self._keys]

    def due(self) -> bool:
        """Whether the current key is older than the rotation interval (or of another algorithm than set)."""
        k = self.current
        started = k.activated_at or k.created_at
        return k.alg != self.alg or (self._clock() - started).total_seconds() >= self.rotation_interval

    async def rotate(self, actor: str = "system", *, emergency: bool = False) -> SigningKey:
        """Move every key one step (see the module doc); returns the new current key.

        Saved only if no other instance rotated since this one read the keys (compare and
        set): overwriting a concurrent rotation brought an emergency-retired key back, or left
        two ``next`` keys. When another rotation won, that one stands — an emergency rotation
        is tried again on the keys it left, so the keys in use when it was asked are retired.
        """
        for _ in range(5):
            await self.reload()  # another instance may have rotated already
            if not emergency and (wait := self.previous_needed_for()) > 0:
                raise Conflict(f"the previous key still verifies tokens for {wait:.0f} s: rotating now would drop "
                               "it while they are valid; rotate after that, or make it an emergency rotation",
                               reason="rotation_too_soon", details={"retry_after": int(wait) + 1})
            read = {k.kid: k.state for k in self._keys if k.state in PUBLISHED}
            promoted, changed, audit = self._rotation(actor, emergency)
            if await self._store.save_all(changed, audit, expected=read):
                await self.reload()
                return promoted
            if not emergency:
                await self.reload()
                return self.current
        raise Unavailable("the signing keys kept changing under this rotation; retry", reason="keys_busy")

    def _rotation(self, actor: str, emergency: bool) -> tuple[SigningKey, list[SigningKey], AuditEntry]:
        now = self._clock()
        changed: list[SigningKey] = []
        by_state = {k.state: k for k in self._keys if k.state in PUBLISHED}
        if "previous" in by_state:
            by_state["previous"].state, by_state["previous"].retired_at = "retired", now
            changed.append(by_state["previous"])
        old = by_state["current"]
        old.state, old.retired_at = ("retired" if emergency else "previous"), now
        changed.append(old)
        promoted = by_state.get("next") or self._new("next", now)
        if "next" in by_state and (emergency or promoted.alg != self.alg):
            # The pending key may have leaked with the current one, or is for the algorithm no longer set.
            promoted = self._new("next", now)
            by_state["next"].state, by_state["next"].retired_at = "retired", now
            changed.append(by_state["next"])
        promoted.state, promoted.activated_at = "current", now
        fresh = self._new("next", now)
        changed += [promoted, fresh]
        return promoted, changed, AuditEntry(actor, "keys.rotated", promoted.kid, now, {
            "previous": None if emergency else old.kid, "retired": [k.kid for k in changed if k.state == "retired"],
            "next": fresh.kid, "emergency": emergency})

    def previous_needed_for(self) -> float:
        """Seconds the previous key must stay published: tokens it signed last are valid that long."""
        for k in self._keys:
            if k.state == "previous" and k.retired_at is not None:
                return max(0.0, self.token_ttl - (self._clock() - k.retired_at).total_seconds())
        return 0.0

    async def rotate_if_due(self) -> bool:
        """Rotate when the schedule says so (also picks up another instance's rotation)."""
        await self.reload()
        if self.due() and self.previous_needed_for() <= 0:
            await self.rotate("system:schedule")
            return True
        return False

    async def reload(self) -> None:
        self._install(await self._store.all())
