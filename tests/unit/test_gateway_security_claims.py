"""Claims → Identity mapping, the token cache and the revocation list."""

from __future__ import annotations

import pytest

from meshkit.basis.context import Identity
from meshkit.gateway.security import RevocationList, challenge, identity_from_claims
from meshkit.gateway.security.cache import TokenCache
from meshkit.gateway.security.tokens import TokenError


def test_full_mapping():
    ident = identity_from_claims({"sub": "u1", "roles": ["a", "b"], "permissions": ["x:read"], "jti": "j",
                                  "tenant": "t1", "client_kind": "service", "scope": "ignored:when-permissions"})
    assert ident == Identity("u1", frozenset({"a", "b"}), frozenset({"x:read"}), "j", "t1", "service")


def test_scope_is_used_when_permissions_are_absent():
    ident = identity_from_claims({"sub": "svc", "scope": "orders:read  orders:write"})
    assert ident.permissions == {"orders:read", "orders:write"}
    assert ident.kind == "user" and ident.roles == frozenset() and ident.token_id is None


def test_azp_does_not_make_a_service():
    assert identity_from_claims({"sub": "u", "azp": "web-shop"}).kind == "user"


@pytest.mark.parametrize("claims,problem", [
    ({}, "no subject"),
    ({"sub": ""}, "no subject"),
    ({"sub": 42}, "no subject"),
    ({"sub": "u", "roles": "admin"}, "'roles' must be a list"),
    ({"sub": "u", "roles": ["a", 1]}, "'roles' must be a list"),
    ({"sub": "u", "permissions": {"a": 1}}, "'permissions' must be a list"),
    ({"sub": "u", "scope": ["a"]}, "'scope' must be"),
    ({"sub": "u", "client_kind": "apikey"}, "client_kind"),
    ({"sub": "u", "jti": 5}, "'jti' must be a string"),
    ({"sub": "u", "roles": ["reader,admin"]}, "'roles' value 'reader,admin' cannot be passed on"),
    ({"sub": "u", "roles": ["admin "]}, "'roles' value 'admin ' cannot be passed on"),
    ({"sub": "u", "roles": [""]}, "'roles' value '' cannot be passed on"),
    ({"sub": "u", "permissions": ["a\nb"]}, "'permissions' value"),
    ({"sub": "u", "scope": "a,b c"}, "'scope' value 'a,b'"),
    ({"sub": " u"}, "'sub' value ' u'"),
    ({"sub": "\u674e"}, "'sub' value"),
    ({"sub": "u", "tenant": "t\x85"}, "'tenant' value"),
    ({"sub": "u", "jti": "j\r"}, "'jti' value"),
])
def test_malformed_claims_invalidate_the_token(claims, problem):
    with pytest.raises(TokenError, match=problem):
        identity_from_claims(claims)


def test_cache_hit_until_exp_then_gone():
    cache = TokenCache(10)
    ident = Identity("u")
    cache.put("tok", ident, exp=100.0, now=50.0)
    assert cache.get("tok", 99.999) is ident
    assert cache.get("tok", 100.0) is None  # at exp: expired, whatever any leeway says
    assert len(cache) == 0


def test_cache_does_not_store_expired_tokens():
    cache = TokenCache(10)
    cache.put("tok", Identity("u"), exp=10.0, now=10.0)
    assert len(cache) == 0


def test_cache_is_a_bounded_lru():
    cache = TokenCache(3)
    for t in "abc":
        cache.put(t, Identity(t), exp=100.0, now=0.0)
    assert cache.get("a", 1.0) is not None  # a is now the most recent
    cache.put("d", Identity("d"), exp=100.0, now=0.0)
    assert cache.get("b", 1.0) is None and len(cache) == 3
    assert all(cache.get(t, 1.0) is not None for t in "acd")


def test_cache_discard():
    cache = TokenCache(10)
    cache.put("t1", Identity("u", token_id="j1"), 100.0, 0.0)
    cache.put("t2", Identity("u", token_id="j2"), 100.0, 0.0)
    cache.discard("t1")
    cache.discard("absent")
    assert cache.get("t1", 1.0) is None and cache.get("t2", 1.0) is not None


def test_revocation_expires_with_its_token():
    now = [1000.0]
    revoked = RevocationList(clock=lambda: now[0])
    revoked.add("j1", until=1010.0)
    revoked.add("j0", until=999.0)  # already expired: nothing to remember
    assert "j1" in revoked and "j0" not in revoked and len(revoked) == 1
    now[0] = 1010.0
    assert "j1" not in revoked


def test_revocation_default_ttl_and_pruning():
    now = [0.0]
    revoked = RevocationList(clock=lambda: now[0])
    revoked.add("forever-ish")
    for i in range(100):
        revoked.add(f"j{i}", until=10.0)
    now[0] = 11.0
    revoked.prune()
    assert len(revoked) == 1 and "forever-ish" in revoked


def test_revocation_list_is_bounded():
    revoked = RevocationList(clock=lambda: 0.0, max_entries=10)
    for i in range(20):
        revoked.add(f"j{i}", until=100.0 + i)
    assert len(revoked) == 10
    assert "j19" in revoked and "j0" not in revoked  # the soonest-expiring go first


def test_challenge_quotes_safely():
    assert challenge() == 'Bearer realm="meshkit"'
    assert challenge("invalid_token", 'say "hi"') == 'Bearer realm="meshkit", error="invalid_token", error_description="say \'hi\'"'


def test_latin1_values_pass_as_they_are():
    ident = identity_from_claims({"sub": "jos\u00e9", "roles": ["r\u00e9dacteur"], "tenant": "caf\u00e9"})
    assert ident.subject == "jos\u00e9" and ident.roles == {"r\u00e9dacteur"}
