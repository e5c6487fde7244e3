"""SSO adapters: SQL stores and migrations, argon2id hashing, AES-GCM sealing, revocations on the bus."""

from meshkit.sso.adapters.bus import BusPublisher, MemoryPublisher
from meshkit.sso.adapters.crypto import AesGcmSealer, decode_key, load_or_create_key_file
from meshkit.sso.adapters.hashing import Argon2Hasher
from meshkit.sso.adapters.sql import SqlAudit, SqlAuthz, SqlKeys, SqlMachines, SqlTokens, SqlUsers
from meshkit.sso.adapters.tables import MIGRATIONS, metadata

__all__ = [
    "MIGRATIONS",
    "AesGcmSealer",
    "Argon2Hasher",
    "BusPublisher",
    "MemoryPublisher",
    "SqlAudit",
    "SqlAuthz",
    "SqlKeys",
    "SqlMachines",
    "SqlTokens",
    "SqlUsers",
    "decode_key",
    "load_or_create_key_file",
    "metadata",
]
