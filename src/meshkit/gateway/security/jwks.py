"""The keys that sign tokens: a JWKS, parsed once, refetched when a new ``kid`` shows up.

Only two kinds of key are ever accepted, each bound to one algorithm:

- ``kty: RSA`` (≥ 2048 bits) for ``RS256``;
- ``kty: OKP, crv: Ed25519`` for ``EdDSA``.

Symmetric (``oct``) keys and every other kind are skipped: a verifier that
never holds an HMAC key cannot be tricked into HS/RS key confusion. A JWK whose
``alg`` names another algorithm, or whose ``use`` is not ``sig``, is skipped too.

:class:`JwksSource` fetches the document from a URL. When a token names a key
the set does not know, it refetches — at most once per ``min_refetch`` seconds,
and concurrent misses share one fetch — so a rotation at the issuer is picked
up at once while a flood of made-up ``kid`` s cannot turn into a flood of fetches.
(The fetch at start-up does not count towards that interval.) A key set older
than ``max_age`` is refreshed in the background on the next new token, so a
key the issuer retired stops working even if no unknown ``kid`` ever shows up.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import orjson
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey, RSAPublicNumbers

from meshkit.basis.http import HttpTransport

log = logging.getLogger("meshkit.gateway.security")

RS256, EDDSA = "RS256", "EdDSA"
#: The only algorithms a token may name. "Ed25519" is the fully specified name (RFC 9864).
ALGORITHMS = frozenset({RS256, EDDSA, "Ed25519"})
MIN_RSA_BITS = 2048

_PKCS1 = padding.PKCS1v15()
_SHA256 = hashes.SHA256()


@dataclass(frozen=True, slots=True)
class VerifyKey:
    """One public key, usable for exactly one algorithm."""

    kid: str
    alg: str  # RS256 or EdDSA
    key: RSAPublicKey | Ed25519PublicKey

    def verify(self, signature: bytes, data: bytes) -> bool:
        """True when ``signature`` over ``data`` is valid for this key."""
        try:
            if self.alg == EDDSA:
                self.key.verify(signature, data)  # type: ignore[call-arg]
            else:
                self.key.verify(signature, data, _PKCS1, _SHA256)  # type: ignore[call-arg]
        except (InvalidSignature, ValueError):
            return False
        return True


def _b64int(value: Any) -> int:
    if not isinstance(value, str) or not value:
        raise ValueError("missing base64url integer")
    return int.from_bytes(base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)), "big")


def parse_jwk(jwk: dict[str, Any]) -> VerifyKey:
    """Turn one JWK into a :class:`VerifyKey`; ``ValueError`` says why it is not usable."""
    kid = jwk.get("kid")
    if not isinstance(kid, str) or not kid:
        raise ValueError("key has no 'kid'")
    if jwk.get("use", "sig") != "sig":
        raise ValueError(f"key {kid!r} is for {jwk.get('use')!r}, not 'sig'")
    kty, alg = jwk.get("kty"), jwk.get("alg")
    if kty == "RSA":
        if alg not in (None, RS256):
            raise ValueError(f"RSA key {kid!r} is for {alg!r}; only RS256 is accepted")
        key = RSAPublicNumbers(_b64int(jwk.get("e")), _b64int(jwk.get("n"))).public_key()
        if key.key_size < MIN_RSA_BITS:
            raise ValueError(f"RSA key {kid!r} has {key.key_size} bits; at least {MIN_RSA_BITS} are required")
        return VerifyKey(kid, RS256, key)
    if kty == "OKP":
        if jwk.get("crv") != "Ed25519":
            raise ValueError(f"OKP key {kid!r} is on curve {jwk.get('crv')!r}; only Ed25519 is accepted")
        if alg not in (None, EDDSA, "Ed25519"):
            raise ValueError(f"Ed25519 key {kid!r} is for {alg!r}; only EdDSA is accepted")
        x = jwk.get("x")
        if not isinstance(x, str):
            raise ValueError(f"Ed25519 key {kid!r} has no 'x'")
        raw = base64.urlsafe_b64decode(x + "=" * (-len(x) % 4))
        return VerifyKey(kid, EDDSA, Ed25519PublicKey.from_public_bytes(raw))
    raise ValueError(f"key {kid!r} has type {kty!r}; only RSA (RS256) and OKP/Ed25519 (EdDSA) are accepted")


def parse_jwks(doc: dict[str, Any] | bytes | str) -> dict[str, VerifyKey]:
    """Parse a JWKS document into ``{kid: VerifyKey}``, skipping (and logging) unusable keys."""
    if isinstance(doc, (bytes, str)):
        doc = orjson.loads(doc)
    keys = doc.get("keys") if isinstance(doc, dict) else None
    if not isinstance(keys, list):
        raise ValueError("a JWKS is a JSON object with a 'keys' list")
    out: dict[str, VerifyKey] = {}
    for jwk in keys:
        try:
            if not isinstance(jwk, dict):
                raise ValueError("a key must be a JSON object")
            k = parse_jwk(jwk)
        except Exception as exc:  # one bad key must not take the others down
            log.warning("JWKS: skipping key: %s", exc)
            continue
        out[k.kid] = k
    return out


Fetch = Callable[[str, float], Awaitable[bytes]]


class JwksSource:
    """The current key set, from a static document or a URL refetched on unknown ``kid``."""

    def __init__(
        self,
        url: str | None = None,
        jwks: dict[str, Any] | None = None,
        *,
        min_refetch: float = 30.0,
        max_age: float = 300.0,
        timeout: float = 5.0,
        fetch: Fetch | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.url = url
        self.min_refetch = min_refetch
        self.max_age = max_age
        self.timeout = timeout
        self.keys: dict[str, VerifyKey] = parse_jwks(jwks) if jwks is not None else {}
        self.loaded = jwks is not None
        self.fetches = 0
        self.last_error: str | None = None
        self._fetch = fetch or http_get
        self._clock = clock
        self._last_attempt: float | None = None
        self._loaded_at = clock()
        self._aged_attempt = float("-inf")
        self._inflight: asyncio.Task[None] | None = None

    async def refresh(self) -> None:
        """Fetch the JWKS now (sharing a fetch already under way)."""
        if self.url is None:
            return
        if self._inflight is None:
            self._inflight = asyncio.get_running_loop().create_task(self._load())
            self._inflight.add_done_callback(self._clear)
        # shield: a cancelled request must not cancel the fetch others wait on
        await asyncio.shield(self._inflight)

    def _clear(self, _task: asyncio.Task[None]) -> None:
        self._inflight = None

    def refresh_if_stale(self) -> None:
        """Start a background refetch when the keys are older than ``max_age`` (no waiting)."""
        if self.url is None or not self.loaded or self._inflight is not None:
            return
        now = self._clock()
        if now - self._loaded_at < self.max_age or now - self._aged_attempt < min(self.min_refetch, self.max_age):
            return
        self._aged_attempt = now
        self._inflight = asyncio.get_running_loop().create_task(self._load())
        self._inflight.add_done_callback(self._clear)

    async def close(self) -> None:
        """Cancel a fetch under way."""
        task = self._inflight
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def lookup_missing(self, kid: str) -> VerifyKey | None:
        """The key ``kid`` after refetching if allowed: once per ``min_refetch`` seconds at most."""
        if self.url is not None and kid not in self.keys:
            if self._inflight is not None:
                await asyncio.shield(self._inflight)
            else:
                # Until a first fetch succeeded, retry sooner: the issuer may just be starting.
                interval = self.min_refetch if self.loaded else min(1.0, self.min_refetch)
                # Only miss-driven fetches count: a key rotated in just after start-up
                # must not wait out an interval that no unknown kid has used yet.
                now, last = self._clock(), self._last_attempt
                if last is None or now - last >= interval:
                    self._last_attempt = now
                    await self.refresh()
        return self.keys.get(kid)

    async def _load(self) -> None:
        assert self.url is not None
        self.fetches += 1
        try:
            body = await self._fetch(self.url, self.timeout)
            keys = parse_jwks(body)
        except Exception as exc:  # keep the keys we have; say why in the log and on the object
            self.last_error = f"{type(exc).__name__}: {exc}"
            log.warning("JWKS fetch from %s failed: %s; keeping %d known key(s)", self.url, self.last_error, len(self.keys))
            return
        if not keys:
            self.last_error = "JWKS has no usable key"
            log.warning("JWKS from %s has no usable key; keeping %d known key(s)", self.url, len(self.keys))
            return
        self.keys, self.loaded, self.last_error = keys, True, None
        self._loaded_at = self._clock()


async def http_get(url: str, timeout: float) -> bytes:
    """GET ``url`` and return the body of a 200; the lean transport for http://, aiohttp (TLS) otherwise."""
    parts = urlsplit(url)
    if parts.scheme == "http":
        transport = HttpTransport()
        try:
            target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
            resp = await transport.request(
                parts.hostname or "127.0.0.1", parts.port or 80, "GET", target,
                headers={"accept": "application/json"}, timeout=timeout,
            )
        finally:
            await transport.close()
        if resp.status != 200:
            raise OSError(f"GET {url} answered {resp.status}")
        return resp.body
    import aiohttp

    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as session:
        async with session.get(url, headers={"accept": "application/json"}) as resp:
            if resp.status != 200:
                raise OSError(f"GET {url} answered {resp.status}")
            return await resp.read()
