"""API keys: a second credential type, for machines of third parties.

A key source sits behind :class:`ApiKeySource`; the SSO will own keys later,
until then :class:`FileApiKeys` reads a YAML (or JSON) file that holds only
SHA-256 hashes of keys — never the keys themselves::

    keys:
      - id: acme-1                  # optional; becomes the identity's token_id
        sha256: 5e884898da28...     # hex SHA-256 of the key (meshkit.gateway.security.hash_key)
        subject: partner-acme
        roles: [partner]
        permissions: [catalog:read]
        tenant: acme                # optional
        expires: 2030-01-01T00:00:00Z   # optional: ISO 8601 or epoch seconds

The file is re-read when it changes (checked at most once a second, on use).

Comparison: the presented key is hashed, the hash indexes the table, and the
stored hash is then confirmed with :func:`hmac.compare_digest`. Timing of the
index lookup can only leak bits of a SHA-256 of the guess, which tell an
attacker nothing about any real key; the key itself is never compared at all.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import yaml

from meshkit.basis.errors import ConfigError

log = logging.getLogger("meshkit.gateway.security")


def hash_key(key: str) -> str:
    """The hex SHA-256 of an API key: what a key file stores."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


@dataclass(frozen=True, slots=True)
class ApiKeyRecord:
    """What a key grants. ``expires`` is epoch seconds or ``None`` (never)."""

    key_hash: str
    subject: str
    roles: frozenset[str] = frozenset()
    permissions: frozenset[str] = frozenset()
    tenant: str | None = None
    expires: float | None = None
    key_id: str | None = None


@runtime_checkable
class ApiKeySource(Protocol):
    """Where API keys are looked up."""

    async def lookup(self, key: str) -> ApiKeyRecord | None:
        """The record of ``key``, or ``None`` when unknown (expired keys are returned; the caller checks)."""


def _expiry(value: Any, where: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool):
        raise ConfigError(f"{where}: 'expires' must be a date-time or epoch seconds")
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            value = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError as exc:
            raise ConfigError(f"{where}: 'expires' {value!r} is not ISO 8601 (e.g. 2030-01-01T00:00:00Z)") from exc
    if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
        value = dt.datetime(value.year, value.month, value.day)
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.UTC)  # a date-time without zone means UTC
        return value.timestamp()
    raise ConfigError(f"{where}: 'expires' must be a date-time or epoch seconds")


def _names(value: Any, field: str, where: str) -> frozenset[str]:
    if value is None:
        return frozenset()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{where}: '{field}' must be a list of strings")
    return frozenset(value)


def parse_key_file(text: str, source: str = "<api keys>") -> dict[str, ApiKeyRecord]:
    """Parse a key file's text into ``{sha256 hex: record}``; :class:`ConfigError` names the problem."""
    try:
        doc = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: not valid YAML/JSON: {exc}") from exc
    entries = doc.get("keys") if isinstance(doc, dict) else None
    if not isinstance(entries, list):
        raise ConfigError(f"{source}: expected a top-level 'keys' list")
    table: dict[str, ApiKeyRecord] = {}
    for i, e in enumerate(entries):
        where = f"{source}: keys[{i}]"
        if not isinstance(e, dict):
            raise ConfigError(f"{where}: each key is a mapping")
        if "key" in e or "secret" in e:
            raise ConfigError(f"{where}: store only the SHA-256 of a key ('sha256'), never the key itself")
        digest = e.get("sha256")
        if not isinstance(digest, str) or len(digest) != 64 or any(c not in "0123456789abcdefABCDEF" for c in digest):
            raise ConfigError(f"{where}: 'sha256' must be 64 hex digits (the SHA-256 of the key)")
        subject = e.get("subject")
        if not isinstance(subject, str) or not subject:
            raise ConfigError(f"{where}: 'subject' is required")
        digest = digest.lower()
        if digest in table:
            raise ConfigError(f"{where}: the same key hash appears twice")
        key_id = e.get("id")
        table[digest] = ApiKeyRecord(
            key_hash=digest,
            subject=subject,
            roles=_names(e.get("roles"), "roles", where),
            permissions=_names(e.get("permissions"), "permissions", where),
            tenant=str(e["tenant"]) if e.get("tenant") else None,
            expires=_expiry(e.get("expires"), where),
            key_id=str(key_id) if key_id else digest[:12],
        )
    return table


class FileApiKeys:
    """API keys from a YAML/JSON file of hashes, re-read when the file changes."""

    def __init__(self, path: str | os.PathLike[str], *, check_interval: float = 1.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.path = Path(path)
        self.check_interval = check_interval
        self._clock = clock
        self._stamp = self._stat()
        self._table = parse_key_file(self.path.read_text("utf-8"), str(self.path))
        self._checked = clock()

    def _stat(self) -> tuple[int, int]:
        try:
            st = self.path.stat()
        except OSError as exc:
            raise ConfigError(f"API key file {self.path} cannot be read: {exc}") from exc
        return st.st_mtime_ns, st.st_size

    def reload_if_changed(self) -> bool:
        """Re-read the file if it changed; a broken file keeps the old table (logged)."""
        try:
            stamp = self._stat()
            if stamp == self._stamp:
                return False
            table = parse_key_file(self.path.read_text("utf-8"), str(self.path))
        except (ConfigError, OSError) as exc:
            log.error("API key file not reloaded, keeping %d key(s): %s", len(self._table), exc)
            return False
        self._stamp, self._table = stamp, table
        log.info("API key file %s reloaded: %d key(s)", self.path, len(table))
        return True

    async def lookup(self, key: str) -> ApiKeyRecord | None:
        now = self._clock()
        if now - self._checked >= self.check_interval:
            self._checked = now
            self.reload_if_changed()
        digest = hash_key(key)
        record = self._table.get(digest)
        if record is None or not hmac.compare_digest(record.key_hash, digest):
            return None
        return record

    def __len__(self) -> int:
        return len(self._table)
