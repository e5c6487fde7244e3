"""JWT verification: happy paths (RS256, EdDSA) and the attack suite, each attack a 401 with a challenge."""

from __future__ import annotations

import hashlib
import hmac
import json
import time

import orjson
import pytest

from meshkit.basis.errors import Forbidden, Unauthorized, Unavailable, error_body
from meshkit.gateway.security import Authenticator
from meshkit.gateway.security.testing import TokenIssuer, b64url

ISS, AUD = "https://sso.meshkit.test", "meshkit"


@pytest.fixture(scope="module")
def ed() -> TokenIssuer:
    return TokenIssuer("EdDSA", kid="ed-1")


@pytest.fixture(scope="module")
def rs() -> TokenIssuer:
    return TokenIssuer("RS256", kid="rs-1")


@pytest.fixture
def auth(ed, rs) -> Authenticator:
    return Authenticator(jwks=ed.jwks(rs), issuer=ISS, audience=AUD, leeway=30)


async def rejected(auth: Authenticator, token: str, problem: str) -> Unauthorized:
    """Assert ``token`` is refused with a 401, an RFC 6750 challenge and ``problem`` in the description."""
    with pytest.raises(Unauthorized) as info:
        await auth.authenticate(f"Bearer {token}", None)
    status, body, headers = error_body(info.value)
    assert status == 401
    challenge = headers["WWW-Authenticate"]
    assert challenge.startswith('Bearer realm="meshkit", error="invalid_token", error_description="')
    assert problem in challenge, challenge
    assert orjson.loads(body)["error"]["reason"] == "invalid_token"
    return info.value


@pytest.mark.parametrize("alg", ["EdDSA", "RS256"])
async def test_valid_token_maps_claims_to_identity(auth, ed, rs, alg):
    issuer = ed if alg == "EdDSA" else rs
    token = issuer.token("alice", roles=["admin"], permissions=["catalog:write"], tenant="acme", jti="t-1")
    ident = await auth.authenticate(f"Bearer {token}", None)
    assert ident.subject == "alice"
    assert ident.roles == {"admin"} and ident.permissions == {"catalog:write"}
    assert (ident.token_id, ident.tenant, ident.kind) == ("t-1", "acme", "user")


async def test_second_use_is_served_from_cache(auth, ed):
    token = ed.token("bob")
    first = await auth.authenticate(f"Bearer {token}", None)
    second = await auth.authenticate(f"bearer {token}", None)  # scheme is case-insensitive
    assert first is second
    assert (auth.misses, auth.hits) == (1, 1)


async def test_no_credential_is_anonymous(auth):
    assert await auth.authenticate(None, None) is None
    assert await auth.authenticate("", "") is None


async def test_expired(auth, ed):
    await rejected(auth, ed.token(ttl=-120), "expired")


async def test_expired_within_leeway_is_accepted_but_not_cached(auth, ed):
    token = ed.token(ttl=-10)
    assert (await auth.authenticate(f"Bearer {token}", None)).subject == "user-1"
    assert len(auth.cache) == 0


async def test_not_yet_valid(auth, ed):
    await rejected(auth, ed.token(nbf=int(time.time()) + 120), "not valid yet")


async def test_issued_in_the_future(auth, ed):
    await rejected(auth, ed.token(iat=int(time.time()) + 120), "issued in the future")


async def test_wrong_issuer(auth, ed):
    await rejected(auth, ed.token(iss="https://evil.example"), "another issuer")


async def test_wrong_audience(auth, ed):
    await rejected(auth, ed.token(aud="billing"), "another audience")


async def test_audience_list_containing_ours_is_accepted(auth, ed):
    assert await auth.authenticate(f"Bearer {ed.token(aud=['billing', AUD])}", None)


async def test_missing_exp(auth, ed):
    await rejected(auth, ed.token(exp=None), "must expire")


@pytest.mark.parametrize("alg", ["none", "None", "NONE"])
async def test_alg_none(auth, ed, alg):
    header = b64url(json.dumps({"alg": alg, "kid": ed.kid, "typ": "JWT"}).encode())
    payload = b64url(json.dumps(ed.claims("root", roles=["admin"])).encode())
    await rejected(auth, f"{header}.{payload}.", "alg 'none'")
    await rejected(auth, f"{header}.{payload}.c2ln", "alg 'none'")


async def test_hs256_signed_with_the_rsa_public_key(auth, rs):
    # The classic key confusion: an HMAC keyed with the public key a verifier may hold.
    header = b64url(json.dumps({"alg": "HS256", "kid": rs.kid, "typ": "JWT"}).encode())
    payload = b64url(json.dumps(rs.claims("root", roles=["admin"])).encode())
    sig = hmac.new(rs.public_pem(), f"{header}.{payload}".encode(), hashlib.sha256).digest()
    await rejected(auth, f"{header}.{payload}.{b64url(sig)}", "'HS256' is not accepted")


async def test_key_of_another_type_than_the_alg(auth, ed, rs):
    # An EdDSA signature presented with the RSA key's kid (and the reverse).
    await rejected(auth, ed.token(headers={"kid": rs.kid}), "is for RS256")
    await rejected(auth, rs.token(headers={"kid": ed.kid}), "is for EdDSA")


async def test_unknown_kid_without_jwks_url(auth, ed):
    await rejected(auth, ed.token(headers={"kid": "nobody"}), "unknown signing key")


async def test_missing_kid(auth, ed):
    await rejected(auth, ed.sign_raw({"alg": "EdDSA"}, json.dumps(ed.claims()).encode()), "no 'kid'")
    await rejected(auth, ed.sign_raw({"alg": "EdDSA", "kid": 7}, json.dumps(ed.claims()).encode()), "no 'kid'")


@pytest.mark.parametrize("alg", ["EdDSA", "RS256"])
async def test_tampered_payload(auth, ed, rs, alg):
    issuer = ed if alg == "EdDSA" else rs
    header, _, sig = issuer.token("mallory").split(".")
    forged = b64url(json.dumps(issuer.claims("mallory", roles=["admin"])).encode())
    await rejected(auth, f"{header}.{forged}.{sig}", "signature is invalid")


@pytest.mark.parametrize("alg", ["EdDSA", "RS256"])
async def test_signed_by_another_key_with_the_same_kid(auth, ed, rs, alg):
    impostor = TokenIssuer(alg, kid=(ed if alg == "EdDSA" else rs).kid)
    await rejected(auth, impostor.token("mallory"), "signature is invalid")


async def test_signature_with_flipped_spare_bits(auth, ed):
    # 64-byte signature → 86 chars, the last carrying 4 unused bits: a variant
    # that decodes to the same bytes must not count as another valid token.
    token = ed.token()
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    last = alphabet.index(token[-1])
    await rejected(auth, token[:-1] + alphabet[last ^ 0x01], "signature is invalid")


@pytest.mark.parametrize("token", [
    "abc", "a.b", "a.b.c.d", "a$.b.c", "...", "e30.e30", "e30.e30.e30.e30",
    "bm90IGpzb24.e30.c2ln",           # header is not JSON
    "WzFd.e30.c2ln",                  # header is a JSON list
    "x" * 9000,
])
async def test_malformed(auth, token):
    await rejected(auth, token, "")


async def test_signed_payload_that_is_not_an_object(auth, ed):
    await rejected(auth, ed.sign_raw({"alg": "EdDSA", "kid": ed.kid}, b"[1, 2]"), "not a JSON object")
    await rejected(auth, ed.sign_raw({"alg": "EdDSA", "kid": ed.kid}, b"\xff"), "not base64url JSON")


async def test_critical_header(auth, ed):
    await rejected(auth, ed.token(headers={"crit": ["exp"], "exp": 1}), "critical")


async def test_claims_with_wrong_types(auth, ed):
    await rejected(auth, ed.token(roles="admin"), "'roles' must be a list")
    await rejected(auth, ed.token(sub=None), "no subject")
    await rejected(auth, ed.token(client_kind="root"), "client_kind")
    await rejected(auth, ed.token(exp="tomorrow"), "must be a number")


async def test_unsupported_scheme(auth):
    with pytest.raises(Unauthorized) as info:
        await auth.authenticate("Basic dXNlcjpwYXNz", None)
    assert 'error="invalid_token"' in info.value.headers["WWW-Authenticate"]


async def test_revoked_token_is_rejected_even_when_cached(auth, ed):
    claims = ed.claims("carol")
    token = ed.sign(claims)
    assert await auth.authenticate(f"Bearer {token}", None)
    auth.revoke(claims["jti"], until=claims["exp"])
    await rejected(auth, token, "revoked")
    assert len(auth.cache) == 0  # dropped from the cache when seen


async def test_revoked_before_first_use(auth, ed):
    claims = ed.claims("dave")
    auth.revoke(claims["jti"], until=claims["exp"])
    await rejected(auth, ed.sign(claims), "revoked")


async def test_cache_never_answers_for_an_expired_token(ed):
    now = [time.time()]
    auth = Authenticator(jwks=ed.jwks(), issuer=ISS, audience=AUD, leeway=30, clock=lambda: now[0])
    claims = ed.claims("erin", ttl=60)
    token = ed.sign(claims)
    assert await auth.authenticate(f"Bearer {token}", None)
    assert len(auth.cache) == 1
    now[0] = claims["exp"] + 31  # past exp and past the leeway
    await rejected(auth, token, "expired")
    assert len(auth.cache) == 0


async def test_jwks_unreachable_is_503_not_401(ed):
    async def down(url: str, timeout: float) -> bytes:
        raise ConnectionRefusedError("connection refused")

    auth = Authenticator(jwks_url="http://127.0.0.1:9/jwks.json", issuer=ISS, audience=AUD, jwks_fetch=down)
    with pytest.raises(Unavailable) as info:
        await auth.authenticate(f"Bearer {ed.token()}", None)
    assert info.value.status == 503 and info.value.headers["Retry-After"] == "1"
    assert info.value.reason == "jwks_unavailable" and info.value.details is None  # no internals to clients
    assert "connection refused" in auth.jwks.last_error


def test_issuer_and_audience_are_required_for_tokens(ed):
    from meshkit.basis.errors import ConfigError

    with pytest.raises(ConfigError, match="issuer and audience"):
        Authenticator(jwks=ed.jwks())


def test_authorize_demands_every_role_and_permission(auth):
    from meshkit.basis.context import Identity

    who = Identity("u", roles=frozenset({"staff"}), permissions=frozenset({"catalog:read"}))
    auth.authorize(who)
    auth.authorize(who, roles=["staff"], permissions=["catalog:read"])
    with pytest.raises(Forbidden) as info:
        auth.authorize(who, roles=["staff", "admin"], permissions=["catalog:read", "catalog:write"])
    assert info.value.status == 403
    assert "role 'admin'" in info.value.message and "permission 'catalog:write'" in info.value.message
    assert info.value.details == {"missing_roles": ["admin"], "missing_permissions": ["catalog:write"]}


def test_authorize_without_identity_is_401_when_something_is_required(auth):
    auth.authorize(None)  # nothing required: fine
    with pytest.raises(Unauthorized) as info:
        auth.authorize(None, permissions=["catalog:write"])
    assert info.value.headers["WWW-Authenticate"] == 'Bearer realm="meshkit"'


async def test_key_embedded_in_the_header_is_ignored(auth, ed):
    attacker = TokenIssuer("EdDSA", kid=ed.kid)
    token = attacker.token("root", roles=["admin"], headers={"jwk": attacker.jwk, "jku": "http://evil.example/jwks"})
    await rejected(auth, token, "signature is invalid")


async def test_symmetric_and_weak_keys_in_the_jwks_are_never_used(ed):
    from meshkit.gateway.security.jwks import parse_jwks

    secret = b"shared-secret-that-must-not-work"
    weak = TokenIssuer("RS256", kid="weak", rsa_bits=1024)
    doc = {"keys": [{"kty": "oct", "kid": "hmac", "k": b64url(secret)}, weak.jwk,
                    {**ed.jwk, "use": "enc", "kid": "enc-key"}, {**ed.jwk, "crv": "X25519", "kid": "x"},
                    {**ed.jwk, "alg": "ES256", "kid": "es"}, "not-an-object", ed.jwk]}
    assert set(parse_jwks(doc)) == {ed.kid}
    auth = Authenticator(jwks=doc, issuer=ISS, audience=AUD)
    header = b64url(json.dumps({"alg": "HS256", "kid": "hmac"}).encode())
    payload = b64url(json.dumps(ed.claims("root")).encode())
    sig = hmac.new(secret, f"{header}.{payload}".encode(), hashlib.sha256).digest()
    await rejected(auth, f"{header}.{payload}.{b64url(sig)}", "'HS256' is not accepted")
    weak_token = weak.sign_raw({"alg": "RS256", "kid": "weak"}, json.dumps(weak.claims()).encode())
    await rejected(auth, weak_token, "unknown signing key 'weak'")  # a real 1024-bit key, refused for its size


async def test_cached_lookup_is_the_hot_path_and_never_verifies(ed):
    now = [time.time()]
    auth = Authenticator(jwks=ed.jwks(), issuer=ISS, audience=AUD, leeway=30, clock=lambda: now[0])
    claims = ed.claims("fay", ttl=60)
    token = ed.sign(claims)
    header = f"Bearer {token}".encode()
    assert auth.cached(header) is None  # not verified yet: "unknown", not "anonymous"
    identity = await auth.authenticate(header.decode(), None)
    assert auth.cached(header) is identity
    assert auth.cached(f"Basic {token}".encode()) is None  # another scheme is never a cache hit
    assert auth.cached(f"Bearer {token}x".encode()) is None
    auth.revoke(claims["jti"], until=claims["exp"])
    with pytest.raises(Unauthorized, match="revoked"):
        auth.cached(header)
    assert len(auth.cache) == 0
    auth2 = Authenticator(jwks=ed.jwks(), issuer=ISS, audience=AUD, leeway=30, clock=lambda: now[0])
    assert await auth2.authenticate(header.decode(), None)
    now[0] = claims["exp"]  # expired: the cache forgets it, verification decides
    assert auth2.cached(header) is None


async def test_tokens_signed_by_a_withdrawn_key_stop_working_even_when_cached(ed):
    # A signing key found compromised is taken out of the JWKS. Tokens it signed that the gateway
    # had cached stayed valid until their own exp, chosen by whoever holds the key (here: years).
    successor = TokenIssuer("EdDSA", kid="ed-next")
    served = {"doc": ed.jwks(successor)}

    async def fetch(url: str, timeout: float) -> bytes:
        return orjson.dumps(served["doc"])

    auth = Authenticator(jwks_url="http://sso.test/jwks.json", issuer=ISS, audience=AUD, jwks_fetch=fetch)
    await auth.start()
    forged, fine = ed.token("mallory", ttl=10 ** 8), successor.token("alice")
    for token in (forged, fine):
        assert await auth.authenticate(f"Bearer {token}", None) is not None
        assert auth.cached(f"Bearer {token}".encode()) is not None
    served["doc"] = successor.jwks()  # the compromised key is withdrawn
    await auth.jwks.refresh()
    assert auth.cached(f"Bearer {forged}".encode()) is None
    with pytest.raises(Unauthorized):
        await auth.authenticate(f"Bearer {forged}", None)
    assert (await auth.authenticate(f"Bearer {fine}", None)).subject == "alice"  # checked again, still good
