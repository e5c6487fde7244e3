"""sso.adapters: argon2id hashing (the real parameters once), AES-GCM sealing of private keys."""

from __future__ import annotations

import os
import time

import pytest

from meshkit.basis.errors import ConfigError
from meshkit.sso.adapters import AesGcmSealer, Argon2Hasher, decode_key


async def test_real_parameters_are_argon2id_19mib_t2_p1_and_cost_tens_of_ms():
    hasher = Argon2Hasher()  # the production defaults
    t0 = time.perf_counter()
    encoded = await hasher.hash("correct horse battery staple")
    took = time.perf_counter() - t0
    assert encoded.startswith("$argon2id$v=19$m=19456,t=2,p=1$")
    assert await hasher.verify(encoded, "correct horse battery staple")
    assert not await hasher.verify(encoded, "correct horse battery stapler")
    assert 0.002 < took < 2.0  # deliberately slow, but not absurdly so on a shared machine
    assert hasher.parameters == {"algorithm": "argon2id", "time_cost": 2, "memory_kib": 19456, "parallelism": 1}


async def test_salted_rehash_and_garbage():
    cheap = Argon2Hasher(time_cost=1, memory_kib=64)
    a, b = await cheap.hash("same password here"), await cheap.hash("same password here")
    assert a != b  # a fresh salt each time
    assert not await cheap.verify("not-a-hash", "x")
    assert cheap.needs_rehash(a) is False
    stronger = Argon2Hasher(time_cost=2, memory_kib=128)
    assert stronger.needs_rehash(a) is True
    assert await stronger.verify(a, "same password here")  # old hashes keep working


def test_sealing_binds_the_key_id_and_needs_the_right_key():
    key = os.urandom(32)
    sealer = AesGcmSealer(key)
    sealed = sealer.seal(b"private key bytes", context=b"kid-1")
    assert b"private key bytes" not in sealed
    assert sealer.open(sealed, context=b"kid-1") == b"private key bytes"
    with pytest.raises(ConfigError):
        sealer.open(sealed, context=b"kid-2")  # moved to another row
    with pytest.raises(ConfigError, match="SSO_KEY_ENCRYPTION_KEY"):
        AesGcmSealer(os.urandom(32)).open(sealed, context=b"kid-1")
    tampered = sealed[:-1] + bytes([sealed[-1] ^ 1])
    with pytest.raises(ConfigError):
        sealer.open(tampered, context=b"kid-1")


def test_key_from_settings_must_be_32_bytes_base64url():
    import base64

    good = base64.urlsafe_b64encode(os.urandom(32)).decode().rstrip("=")
    assert len(decode_key(good)) == 32
    with pytest.raises(ConfigError):
        decode_key(base64.urlsafe_b64encode(b"short").decode())
    with pytest.raises(ConfigError):
        decode_key("%%%not base64%%%")
