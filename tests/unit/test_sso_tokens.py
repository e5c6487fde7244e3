"""sso.app: token issue/verify, key rotation (next/current/previous), refresh families — on in-memory fakes."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import jwt
import pytest

from meshkit.basis.errors import Conflict, Unauthorized
from meshkit.gateway.security import Authenticator
from meshkit.sso.adapters import AesGcmSealer, MemoryPublisher
from meshkit.sso.app import KeyRing, Tokens


class MemoryKeys:
    """A KeyStore in a dict (copies in and out, like a database)."""

    def __init__(self) -> None:
        self.rows: dict[str, object] = {}
        self.audit: list = []

    async def all(self):
        return [replace(k) for k in sorted(self.rows.values(), key=lambda k: k.created_at)]

    async def save_all(self, keys, audit, expected=None):
        if any(kid not in self.rows or self.rows[kid].state != state for kid, state in (expected or {}).items()):
            return False
        for k in keys:
            self.rows[k.kid] = replace(k)
        self.audit.append(audit)
        return True


class MemoryTokens:
    """A TokenStore in dicts."""

    def __init__(self) -> None:
        self.rows: dict[str, object] = {}
        self.revoked: dict[str, float] = {}

    async def add(self, token, audit=None):
        self.rows[token.id] = token

    async def by_hash(self, token_hash):
        return next((replace(t) for t in self.rows.values() if t.token_hash == token_hash), None)

    async def family_started(self, family):
        return min((t.issued_at for t in self.rows.values() if t.family == family), default=None)

    async def use(self, token_id, now, successor=None):
        t = self.rows[token_id]
        if t.used_at is not None or t.revoked_at is not None:
            return False
        if successor is not None:
            await self.add(successor)  # may fail (a test's database outage): then nothing happened
        t.used_at = now
        return True

    async def revoke_family(self, family, now, audit):
        out = []
        for t in self.rows.values():
            if t.family == family:
                t.revoked_at = t.revoked_at or now
                out.append((t.access_jti, t.access_exp))
        return out

    async def families(self, subject):
        return sorted({t.family for t in self.rows.values() if t.subject == subject and t.revoked_at is None})

    async def add_revocation(self, jti, exp):
        self.revoked[jti] = exp

    async def revocations(self, now):
        return [(j, e) for j, e in self.revoked.items() if e > now]

    async def prune(self, now, now_epoch):
        return 0


async def make(alg: str = "EdDSA", **kw):
    keys = KeyRing(MemoryKeys(), AesGcmSealer(os.urandom(32)), alg=alg, rotation_interval=kw.pop("interval", 3600))
    await keys.load()
    pub = MemoryPublisher()
    tokens = Tokens(keys, MemoryTokens(), pub, issuer="https://sso.test", audience="meshkit", **kw)
    return keys, tokens, pub


def _segments(token: str):
    h, p, s = token.split(".")
    pad = lambda x: x + "=" * (-len(x) % 4)  # noqa: E731
    return json.loads(base64.urlsafe_b64decode(pad(h))), json.loads(base64.urlsafe_b64decode(pad(p))), s


@pytest.mark.parametrize("alg", ["EdDSA", "RS256"])
async def test_issue_then_verify_with_every_claim(alg):
    keys, tokens, _ = await make(alg)
    token, jti, exp = tokens.mint("usr_1", roles=["editor"], permissions=["catalog:write"], tenant="acme", sid="ses_1")
    header, claims, _ = _segments(token)
    assert header == {"alg": alg, "kid": keys.current.kid, "typ": "at+jwt"}
    assert {"iss", "aud", "sub", "exp", "iat", "nbf", "jti", "roles", "permissions"} <= claims.keys()
    assert claims["jti"] == jti and claims["exp"] == exp and claims["exp"] - claims["iat"] == 900
    assert tokens.verify(token)["permissions"] == ["catalog:write"]
    # The gateway's authenticator accepts it with nothing but the published JWKS.
    auth = Authenticator(jwks=keys.jwks(), issuer="https://sso.test", audience="meshkit")
    identity = await auth.authenticate(f"Bearer {token}", None)
    assert identity.subject == "usr_1" and identity.permissions == {"catalog:write"} and identity.tenant == "acme"


async def test_jwks_has_no_private_parts_and_next_is_published_ahead():
    keys, _, _ = await make()
    doc = keys.jwks()
    assert doc["keys"][0]["kid"] == keys.current.kid and len(doc["keys"]) == 2
    for k in doc["keys"]:
        assert "d" not in k and k["use"] == "sig"


async def test_rotation_keeps_tokens_in_flight_valid_and_drops_keys_two_rotations_old():
    keys, tokens, _ = await make()
    published_next = [k["kid"] for k in keys.jwks()["keys"]][1]
    old, _, _ = tokens.mint("u", roles=[], permissions=[])
    first = keys.current.kid
    await keys.rotate("admin")
    assert keys.current.kid == published_next  # the key gateways already had becomes current
    new, _, _ = tokens.mint("u", roles=[], permissions=[])
    assert tokens.verify(old)["sub"] == "u" and tokens.verify(new)["sub"] == "u"
    assert first in [k["kid"] for k in keys.jwks()["keys"]]
    await keys.rotate("admin")
    assert first not in [k["kid"] for k in keys.jwks()["keys"]]
    with pytest.raises(Unauthorized):
        tokens.verify(old)


async def test_emergency_rotation_retires_current_and_pending_keys():
    keys, tokens, _ = await make()
    leaked_current = keys.current.kid
    leaked_next = keys.jwks()["keys"][1]["kid"]
    old, _, _ = tokens.mint("u", roles=[], permissions=[])
    await keys.rotate("admin", emergency=True)
    kids = [k["kid"] for k in keys.jwks()["keys"]]
    assert leaked_current not in kids and leaked_next not in kids
    with pytest.raises(Unauthorized):
        tokens.verify(old)


async def test_an_emergency_rotation_that_loses_a_race_is_made_again_on_the_winners_keys():
    keys, _, _ = await make()
    other = KeyRing(keys._store, keys._sealer, alg="EdDSA")
    await other.load()
    leaked = {k["kid"] for k in keys.jwks()["keys"]}  # current and next, both in memory where the leak was
    store, read, raced = keys._store, keys._store.all, []

    async def read_then_a_scheduled_rotation_lands():
        rows = await read()
        if not raced:
            raced.append(None)  # (the other rotation reads through here too)
            raced[0] = await other.rotate("system:schedule")
        return rows

    store.all = read_then_a_scheduled_rotation_lands
    await keys.rotate("admin", emergency=True)
    store.all = read
    live = {k.kid: k.state for k in await read() if k.state != "retired"}
    assert sorted(live.values()) == ["current", "next"] and leaked.isdisjoint(live)
    assert raced[0].kid not in live  # the key the other rotation promoted was published with the leaked ones


async def test_scheduled_rotation():
    keys, _, _ = await make(interval=0.01)
    before = keys.current.kid
    await asyncio.sleep(0.02)
    assert await keys.rotate_if_due()
    assert keys.current.kid != before


async def test_keys_survive_a_reload_sealed():
    store = MemoryKeys()
    kek = os.urandom(32)
    a = KeyRing(store, AesGcmSealer(kek))
    await a.load()
    b = KeyRing(store, AesGcmSealer(kek))
    await b.load()
    assert b.current.kid == a.current.kid
    assert b.signing_key()[2].private_bytes_raw() == a.signing_key()[2].private_bytes_raw()
    for row in store.rows.values():
        assert a.signing_key()[2].private_bytes_raw() not in row.sealed_private


@pytest.mark.parametrize("attack", ["expired", "future", "issuer", "audience", "none", "hs256", "kid", "tamper"])
async def test_verify_refuses_forged_tokens(attack):
    keys, tokens, _ = await make()
    kid, alg, private = keys.signing_key()
    now = int(time.time())
    claims = {"iss": "https://sso.test", "aud": "meshkit", "sub": "u", "iat": now, "nbf": now, "exp": now + 60,
              "jti": "j1", "roles": [], "permissions": ["sso:admin"]}
    if attack == "expired":
        claims.update(exp=now - 120, iat=now - 300, nbf=now - 300)
    elif attack == "future":
        claims.update(nbf=now + 300)
    elif attack == "issuer":
        claims.update(iss="https://evil.test")
    elif attack == "audience":
        claims.update(aud="other")
    headers = {"kid": kid}
    if attack == "none":
        token = jwt.encode(claims, None, algorithm="none", headers=headers)
    elif attack == "hs256":
        public = keys.jwks()["keys"][0]["x"].encode()
        token = jwt.encode(claims, public, algorithm="HS256", headers=headers)
    elif attack == "kid":
        token = jwt.encode(claims, private, algorithm=alg, headers={"kid": "unknown"})
    else:
        token = jwt.encode(claims, private, algorithm=alg, headers=headers)
    if attack == "tamper":
        h, p, s = token.split(".")
        body = _segments(token)[1]
        body["sub"] = "admin"
        p = base64.urlsafe_b64encode(json.dumps(body).encode()).rstrip(b"=").decode()
        token = f"{h}.{p}.{s}"
    with pytest.raises(Unauthorized):
        tokens.verify(token)


async def _claims(subject):
    return ["editor"], ["catalog:write"], None


async def test_refresh_rotates_and_reuse_revokes_the_family():
    _, tokens, pub = await make()
    first = await tokens.open_session("u", roles=[], permissions=[])
    second = await tokens.rotate(first["refresh_token"], _claims)
    assert second["refresh_token"] != first["refresh_token"]
    assert tokens.verify(second["access_token"])["permissions"] == ["catalog:write"]  # current grants
    third = await tokens.rotate(second["refresh_token"], _claims)
    with pytest.raises(Unauthorized, match="already used"):
        await tokens.rotate(first["refresh_token"], _claims)  # a copy of an old token: theft
    revoked = {j for j, _ in pub.published}
    for pair in (first, second, third):
        assert tokens.is_revoked(_segments(pair["access_token"])[1]["jti"])
    assert len(revoked) == 3
    with pytest.raises(Unauthorized):
        await tokens.rotate(third["refresh_token"], _claims)  # the thief's newest token is dead too


async def test_refresh_refuses_garbage_and_disabled_subjects():
    _, tokens, _ = await make()
    for bad in ("", "x" * 10, "y" * 43, None):
        with pytest.raises(Unauthorized):
            await tokens.rotate(bad, _claims)
    pair = await tokens.open_session("u", roles=[], permissions=[])

    async def disabled(subject):
        raise Unauthorized("disabled")

    with pytest.raises(Unauthorized):
        await tokens.rotate(pair["refresh_token"], disabled)


async def test_revoke_sessions_keeps_the_current_one():
    _, tokens, pub = await make()
    a = await tokens.open_session("u", roles=[], permissions=[])
    b = await tokens.open_session("u", roles=[], permissions=[])
    keep = _segments(a["access_token"])[1]["sid"]
    assert await tokens.revoke_sessions("u", "u", keep=keep) == 1
    assert tokens.verify(a["access_token"])
    with pytest.raises(Unauthorized, match="revoked"):
        tokens.verify(b["access_token"])
    assert [j for j, _ in pub.published] == [_segments(b["access_token"])[1]["jti"]]


async def test_expired_revocations_are_not_published():
    _, tokens, pub = await make()
    await tokens.revoke_access("old", time.time() - tokens.leeway - 1)  # past exp + leeway: no token verifies
    assert pub.published == [] and not tokens.is_revoked("old")


async def test_a_revoked_token_stays_refused_through_the_leeway_past_its_exp():
    # A token verifies until exp + leeway (clock skew), so its revocation must last that long too.
    now = [time.time()]
    _, tokens, pub = await make(access_ttl=60, clock=lambda: now[0])
    _, jti, exp = tokens.mint("u", roles=[], permissions=[])
    await tokens.revoke_access(jti, exp)
    now[0] = exp + tokens.leeway / 2  # expired, but within the leeway: jwt.decode alone would accept it
    assert tokens.is_revoked(jti)
    await tokens.prune()
    assert tokens.is_revoked(jti)  # pruning keeps it too
    now[0] = exp + tokens.leeway + 1
    assert not tokens.is_revoked(jti)
    await tokens.prune()
    assert jti not in tokens._revoked
    tokens.remember("late", exp)  # another instance's revocation of a token that no longer verifies
    assert not tokens.is_revoked("late") and pub.published == [(jti, exp)]


async def test_a_refresh_that_fails_half_way_can_be_retried_with_the_same_token():
    """The token was spent before the new one was stored or the claims read: a database error there (503),
    then the client's retry looked like reuse — the session ended, 'for safety'."""
    from meshkit.basis.errors import Unavailable

    _, tokens, pub = await make()
    pair = await tokens.open_session("u", roles=[], permissions=[])
    store = tokens._store
    add = store.add

    async def down(*args, **kwargs):
        raise Unavailable("the database is busy or unreachable; retry shortly")

    async def claims_down(subject):
        raise Unavailable("the database is busy or unreachable; retry shortly")

    with pytest.raises(Unavailable):
        await tokens.rotate(pair["refresh_token"], claims_down)
    store.add = down
    with pytest.raises(Unavailable):
        await tokens.rotate(pair["refresh_token"], _claims)
    store.add = add
    again = await tokens.rotate(pair["refresh_token"], _claims)  # the retry
    assert tokens.verify(again["access_token"])["permissions"] == ["catalog:write"] and pub.published == []
    with pytest.raises(Unauthorized, match="already used"):
        await tokens.rotate(pair["refresh_token"], _claims)  # now it is spent: a copy is theft, as before


async def test_a_changed_signing_algorithm_signs_from_the_next_start():
    """SSO_SIGNING_ALG=RS256 on an EdDSA ring kept signing EdDSA (the pending key was EdDSA too): two rotations,
    two weeks, while the discovery document already said RS256."""
    keys, tokens, _ = await make("EdDSA")
    old, _, _ = tokens.mint("u", roles=[], permissions=[])
    ring = KeyRing(keys._store, keys._sealer, alg="RS256")
    await ring.load()
    assert ring.current.alg == "RS256" and ring.signing_key()[1] == "RS256"
    published = {k["kid"]: k["alg"] for k in ring.jwks()["keys"]}
    assert sorted(published.values()) == ["EdDSA", "RS256", "RS256"]  # previous (EdDSA), current and next
    later = Tokens(ring, tokens._store, MemoryPublisher(), issuer="https://sso.test", audience="meshkit")
    assert later.verify(old)["sub"] == "u"  # tokens in flight still verify
    assert _segments(later.mint("u", roles=[], permissions=[])[0])[0]["alg"] == "RS256"


async def test_a_second_rotation_waits_until_the_previous_key_has_no_live_tokens():
    """Two rotations within a token's lifetime dropped the key that signed tokens still valid (a 401 for them)."""
    now = [datetime.now(UTC)]
    keys = KeyRing(MemoryKeys(), AesGcmSealer(os.urandom(32)), token_ttl=930, clock=lambda: now[0])
    await keys.load()
    tokens = Tokens(keys, MemoryTokens(), MemoryPublisher(), issuer="https://sso.test", audience="meshkit")
    live, _, _ = tokens.mint("u", roles=[], permissions=[])
    await keys.rotate("admin")
    now[0] += timedelta(seconds=600)
    with pytest.raises(Conflict) as refused:
        await keys.rotate("admin")
    assert refused.value.reason == "rotation_too_soon" and refused.value.details == {"retry_after": 331}
    assert not await keys.rotate_if_due() and tokens.verify(live)["sub"] == "u"
    now[0] += timedelta(seconds=331)
    await keys.rotate("admin")  # its tokens have expired: now it may go
    await keys.rotate("admin", emergency=True)  # an emergency never waits


async def test_a_session_ends_session_max_after_its_login_however_often_refreshed():
    # Before: each refresh slid the session 30 days on; a session kept refreshed never ended.
    now = [1_000_000.0]
    _, tokens, _ = await make(refresh_ttl=30 * 86400.0, session_max=90 * 86400.0, clock=lambda: now[0])
    pair = await tokens.open_session("usr_1", roles=[], permissions=[], tenant=None)

    async def claims(subject):
        return [], [], None

    for _ in range(4):  # days 20, 40, 60, 80: each refresh within the 30-day window
        now[0] += 20 * 86400
        pair = await tokens.rotate(pair["refresh_token"], claims)
    record = await tokens.family_of(pair["refresh_token"])
    assert record.expires_at.timestamp() == 1_000_000.0 + 90 * 86400  # capped at the session's end
    now[0] += 9 * 86400  # day 89: still in
    pair = await tokens.rotate(pair["refresh_token"], claims)
    now[0] += 2 * 86400  # day 91: the session is over, however fresh its refresh token
    with pytest.raises(Unauthorized):
        await tokens.rotate(pair["refresh_token"], claims)
    # A session from before the limit (its refresh token not capped) ends too, and says why.
    uncapped = Tokens(tokens.keys, tokens._store, MemoryPublisher(), issuer="https://sso.test", audience="meshkit",
                      clock=lambda: now[0])
    old = await uncapped.open_session("usr_2", roles=[], permissions=[], tenant=None)
    now[0] += 20 * 86400
    old = await uncapped.rotate(old["refresh_token"], claims)  # good for 30 more days
    now[0] += 15 * 86400  # 35 days after its login
    capped = Tokens(tokens.keys, tokens._store, MemoryPublisher(), issuer="https://sso.test", audience="meshkit",
                    session_max=30 * 86400.0, clock=lambda: now[0])
    with pytest.raises(Unauthorized, match="maximum length"):
        await capped.rotate(old["refresh_token"], claims)
