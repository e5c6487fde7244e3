"""The gateway's seal on the identity it injects, so a service can tell it from a forged one.

The gateway verifies a caller's credential and passes who it is to the upstream
as ``x-meshkit-*`` headers, stripping any the client sent. That keeps a client
going *through* the gateway from choosing its identity; a caller reaching a
service *directly* (anything that can open a connection to it) could still send
``x-meshkit-permissions: catalog:write``. With a key shared by the gateway and
the services (``MESHKIT_IDENTITY_KEY``: 32 random bytes, hex; ``meshkit up``
makes one per run), the gateway adds::

    x-meshkit-seal: v1.<expires, unix seconds>.<HMAC-SHA256 of the identity headers and expires, hex>

and every service (:mod:`meshkit.basis.middleware.context`) believes the identity
headers only under a valid, unexpired seal; without one the call is anonymous.
A service passing the caller's identity on to another (the service client)
passes the seal with it. Without a key, identity headers are believed as before
(a deployment where only the gateway can reach the services).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping

from meshkit.basis.context import IDENTITY_HEADERS
from meshkit.basis.errors import ConfigError

SEAL = "x-meshkit-seal"
#: Seconds a seal is good for; the gateway makes a new one well before (see :func:`seal`).
SEAL_TTL = 300


def parse_key(value: str | None) -> bytes | None:
    """The key of ``MESHKIT_IDENTITY_KEY`` (hex, at least 32 bytes), ``None`` when unset."""
    if not value:
        return None
    try:
        key = bytes.fromhex(value.strip())
    except ValueError:
        key = b""
    if len(key) < 32:
        raise ConfigError("MESHKIT_IDENTITY_KEY must be at least 32 bytes in hex (64 hex digits), e.g. "
                          "python -c 'import secrets; print(secrets.token_hex(32))'")
    return key


def _mac(headers: Mapping[str, str], expires: int, key: bytes) -> str:
    text = "\n".join(f"{name}:{headers.get(name, '')}" for name in IDENTITY_HEADERS) + f"\n{expires}"
    return hmac.new(key, text.encode("utf-8", "surrogateescape"), hashlib.sha256).hexdigest()


def seal(headers: Mapping[str, str], key: bytes, expires: int) -> str:
    """The seal of identity ``headers`` (names lower-case) good until ``expires`` (unix seconds)."""
    return f"v1.{expires}.{_mac(headers, expires, key)}"


def verify(headers: Mapping[str, str], key: bytes, now: float) -> bool:
    """Whether ``headers`` carry a valid seal of their identity headers, not expired at ``now``."""
    value = headers.get(SEAL)
    if not value:
        return False
    version, _, rest = value.partition(".")
    raw_expires, _, mac = rest.partition(".")
    if version != "v1" or not raw_expires.isdigit() or len(raw_expires) > 12:
        return False
    expires = int(raw_expires)
    if expires <= now:
        return False
    return hmac.compare_digest(mac, _mac(headers, expires, key))


__all__ = ["SEAL", "SEAL_TTL", "parse_key", "seal", "verify"]
