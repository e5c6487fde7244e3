"""Private signing keys sealed at rest with AES-256-GCM (the key-encryption key comes from settings).

A sealed value is ``version(1) | nonce(12) | ciphertext+tag``; the key id is
bound as associated data, so a sealed key copied onto another row fails to
open. The key-encryption key is 32 bytes, given base64url-encoded in
``SSO_KEY_ENCRYPTION_KEY``; without it a key file is made once in the data
directory (mode 0600) — convenient on one machine, not for production.
"""

from __future__ import annotations

import base64
import logging
import os
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from meshkit.basis.errors import ConfigError

log = logging.getLogger("meshkit.sso")
_VERSION = b"\x01"


class AesGcmSealer:
    """:class:`~meshkit.sso.app.ports.Sealer` with AES-256-GCM."""

    def __init__(self, key: bytes) -> None:
        if len(key) != 32:
            raise ConfigError("the key-encryption key must be 32 bytes (base64url in SSO_KEY_ENCRYPTION_KEY)")
        self._aead = AESGCM(key)

    def seal(self, plaintext: bytes, *, context: bytes) -> bytes:
        nonce = os.urandom(12)
        return _VERSION + nonce + self._aead.encrypt(nonce, plaintext, context)

    def open(self, sealed: bytes, *, context: bytes) -> bytes:
        if sealed[:1] != _VERSION or len(sealed) < 29:
            raise ConfigError("a sealed signing key is in an unknown format")
        try:
            return self._aead.decrypt(sealed[1:13], sealed[13:], context)
        except InvalidTag as exc:
            raise ConfigError("a signing key cannot be unsealed: SSO_KEY_ENCRYPTION_KEY is not the key it was "
                              "sealed with (restore that key, or delete the signing keys to start over)") from exc


def decode_key(text: str) -> bytes:
    """32 bytes from base64url (padding optional); :class:`ConfigError` otherwise."""
    try:
        raw = base64.urlsafe_b64decode(text.strip() + "=" * (-len(text.strip()) % 4))
    except ValueError as exc:
        raise ConfigError("SSO_KEY_ENCRYPTION_KEY is not base64url; make one with "
                          "python -c \"import os,base64;print(base64.urlsafe_b64encode(os.urandom(32)).decode())\"") from exc
    if len(raw) != 32:
        raise ConfigError(f"SSO_KEY_ENCRYPTION_KEY decodes to {len(raw)} bytes; it must be 32")
    return raw


def load_or_create_key_file(path: Path) -> bytes:
    """The key stored at ``path``, made (0600) on first use when absent."""
    if path.exists():
        return decode_key(path.read_text("ascii"))
    path.parent.mkdir(parents=True, exist_ok=True)
    key = os.urandom(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(base64.urlsafe_b64encode(key).decode())
    log.warning("SSO_KEY_ENCRYPTION_KEY is not set: made a key-encryption key in %s; set the variable in "
                "production and keep the key in a secret store", path)
    return key
