"""API keys from a file of hashes: valid, expired, unknown, constant-time compare, reload, refusals."""

from __future__ import annotations

import hmac
import json
import os
import time

import pytest

from meshkit.basis.errors import ConfigError, Unauthorized
from meshkit.gateway.security import Authenticator, FileApiKeys, hash_key


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def write(path, entries, fmt="yaml"):
    if fmt == "json":
        path.write_text(json.dumps({"keys": entries}))
    else:
        import yaml

        path.write_text(yaml.safe_dump({"keys": entries}))


@pytest.fixture
def keyfile(tmp_path):
    path = tmp_path / "api-keys.yaml"
    write(path, [
        {"id": "acme-1", "sha256": hash_key("mk_live_acme"), "subject": "partner-acme", "roles": ["partner"],
         "permissions": ["catalog:read"], "tenant": "acme", "expires": "2999-01-01T00:00:00Z"},
        {"sha256": hash_key("mk_old"), "subject": "partner-old", "expires": 1_000_000},
    ])
    return path


async def test_valid_key(keyfile):
    auth = Authenticator(api_keys_file=str(keyfile))
    ident = await auth.authenticate(None, "mk_live_acme")
    assert (ident.subject, ident.kind, ident.token_id, ident.tenant) == ("partner-acme", "apikey", "acme-1", "acme")
    assert ident.roles == {"partner"} and ident.permissions == {"catalog:read"}


@pytest.mark.parametrize("key,problem", [("mk_old", "expired"), ("mk_nope", "unknown API key"), ("", None)])
async def test_expired_and_unknown_keys(keyfile, key, problem):
    auth = Authenticator(api_keys_file=str(keyfile))
    if problem is None:
        assert await auth.authenticate(None, key) is None  # an empty header is no credential
        return
    with pytest.raises(Unauthorized) as info:
        await auth.authenticate(None, key)
    assert problem in info.value.headers["WWW-Authenticate"]


async def test_bearer_token_wins_over_api_key(keyfile):
    auth = Authenticator(api_keys_file=str(keyfile))  # no JWKS: tokens are refused
    with pytest.raises(Unauthorized, match="bearer tokens are not accepted"):
        await auth.authenticate("Bearer a.b.c", "mk_live_acme")


async def test_api_keys_not_configured():
    with pytest.raises(Unauthorized, match="API keys are not accepted"):
        await Authenticator().authenticate(None, "mk_live_acme")


async def test_hashes_are_compared_in_constant_time(keyfile, monkeypatch):
    calls = []
    real = hmac.compare_digest

    def spy(a, b):
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    keys = FileApiKeys(keyfile)
    assert (await keys.lookup("mk_live_acme")).subject == "partner-acme"
    assert calls == [(hash_key("mk_live_acme"), hash_key("mk_live_acme"))]
    assert "mk_live_acme" not in keyfile.read_text()  # only the hash is stored


async def test_reload_on_change(keyfile):
    clock = Clock()
    keys = FileApiKeys(keyfile, clock=clock)
    assert await keys.lookup("mk_new") is None
    write(keyfile, [{"sha256": hash_key("mk_new"), "subject": "newcomer"}], fmt="json")
    os.utime(keyfile, ns=(time.time_ns(), time.time_ns() + 10**9))  # a visible change even on coarse clocks
    assert await keys.lookup("mk_new") is None  # not re-checked before check_interval
    clock.t += 1.0
    assert (await keys.lookup("mk_new")).subject == "newcomer"
    assert await keys.lookup("mk_live_acme") is None  # removed keys stop working


async def test_broken_file_on_reload_keeps_the_old_keys(keyfile):
    clock = Clock()
    keys = FileApiKeys(keyfile, clock=clock)
    keyfile.write_text("keys: [ {sha256: nope")
    clock.t += 1.0
    assert (await keys.lookup("mk_live_acme")).subject == "partner-acme"


@pytest.mark.parametrize("entries,problem", [
    ([{"key": "mk_plain", "sha256": "0" * 64, "subject": "x"}], "never the key itself"),
    ([{"sha256": "abc", "subject": "x"}], "64 hex digits"),
    ([{"sha256": "0" * 64}], "'subject' is required"),
    ([{"sha256": "0" * 64, "subject": "x"}, {"sha256": "0" * 64, "subject": "y"}], "twice"),
    ([{"sha256": "0" * 64, "subject": "x", "roles": "admin"}], "'roles' must be a list"),
    ([{"sha256": "0" * 64, "subject": "x", "expires": "next week"}], "ISO 8601"),
])
def test_bad_key_files_are_refused_with_the_entry_named(tmp_path, entries, problem):
    path = tmp_path / "keys.yaml"
    write(path, entries)
    with pytest.raises(ConfigError, match=problem) as info:
        FileApiKeys(path)
    assert "keys.yaml" in info.value.message and "keys[" in info.value.message


def test_missing_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="cannot be read"):
        FileApiKeys(tmp_path / "absent.yaml")


@pytest.mark.parametrize("grants", [{"roles": ["partner,admin"]}, {"permissions": [" catalog:write"]},
                                    {"subject": "acme\r\nx-meshkit-roles: admin"}, {"tenant": "\u674e"}])
async def test_a_key_whose_grants_a_header_cannot_carry_is_refused(tmp_path, grants):
    # Joined into x-meshkit-roles, "partner,admin" reaches the upstream as two roles.
    path = tmp_path / "keys.yaml"
    write(path, [{"id": "k1", "sha256": hash_key("mk_k1"), "subject": "partner-acme", **grants}])
    auth = Authenticator(api_keys_file=str(path))
    with pytest.raises(Unauthorized) as info:
        await auth.authenticate(None, "mk_k1")
    assert "cannot be passed on" in info.value.message
