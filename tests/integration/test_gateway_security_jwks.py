"""JWKS fetched over real HTTP (a raw asyncio server on a free port), and revocations over real NATS."""

from __future__ import annotations

import asyncio
import time

import orjson
import pytest

from meshkit.basis.errors import Unauthorized, Unavailable
from meshkit.basis.natsd import free_port
from meshkit.gateway.security import Authenticator
from meshkit.gateway.security.testing import TokenIssuer

ISS, AUD = "https://sso.meshkit.test", "meshkit"


class JwksServer:
    """A minimal HTTP/1.1 server answering every GET with the current JWKS document."""

    def __init__(self, doc: dict, delay: float = 0.0) -> None:
        self.doc, self.delay, self.requests = doc, delay, 0
        self.server: asyncio.Server | None = None

    async def __aenter__(self) -> JwksServer:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/.well-known/jwks.json"

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                if not head.startswith(b"GET /.well-known/jwks.json "):
                    writer.write(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n")
                    continue
                self.requests += 1
                await asyncio.sleep(self.delay)
                body = orjson.dumps(self.doc)
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                             b"content-length: %d\r\n\r\n%s" % (len(body), body))
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def __aexit__(self, *exc) -> None:
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()


@pytest.fixture(scope="module")
def keys() -> tuple[TokenIssuer, TokenIssuer, TokenIssuer]:
    return TokenIssuer("EdDSA", kid="k-old"), TokenIssuer("RS256", kid="k-new"), TokenIssuer("EdDSA", kid="k-rogue")


async def test_unknown_kid_refetches_once_then_rate_limits(keys):
    old, new, rogue = keys
    async with JwksServer(old.jwks()) as srv:
        auth = Authenticator(jwks_url=srv.url, issuer=ISS, audience=AUD, jwks_min_refetch=0.5)
        await auth.start()
        assert srv.requests == 1
        assert (await auth.authenticate(f"Bearer {old.token('alice')}", None)).subject == "alice"
        assert srv.requests == 1  # known kid: no fetch

        srv.doc = old.jwks(new)  # the issuer rotates in a new key
        assert (await auth.authenticate(f"Bearer {new.token('bob')}", None)).subject == "bob"
        assert srv.requests == 2  # one refetch found it

        with pytest.raises(Unauthorized) as info:  # a second unknown kid inside the interval
            await auth.authenticate(f"Bearer {rogue.token('mallory')}", None)
        assert "unknown signing key" in info.value.headers["WWW-Authenticate"]
        assert srv.requests == 2  # ... does not refetch

        await asyncio.sleep(0.55)
        with pytest.raises(Unauthorized):
            await auth.authenticate(f"Bearer {rogue.token('mallory')}", None)
        assert srv.requests == 3  # after the interval, one more try (still unknown)


async def test_concurrent_misses_share_one_fetch(keys):
    old, new, _ = keys
    async with JwksServer(old.jwks(new), delay=0.05) as srv:
        auth = Authenticator(jwks_url=srv.url, issuer=ISS, audience=AUD)
        tokens = [new.token(f"user-{i}") for i in range(20)]
        idents = await asyncio.gather(*(auth.authenticate(f"Bearer {t}", None) for t in tokens))
        assert [i.subject for i in idents] == [f"user-{i}" for i in range(20)]
        assert srv.requests == 1 and auth.jwks.fetches == 1


async def test_previous_keys_vanish_after_rotation(keys):
    old, new, _ = keys
    async with JwksServer(old.jwks()) as srv:
        auth = Authenticator(jwks_url=srv.url, issuer=ISS, audience=AUD, jwks_min_refetch=0.0)
        await auth.start()
        srv.doc = new.jwks()  # old key retired
        assert await auth.authenticate(f"Bearer {new.token()}", None)
        with pytest.raises(Unauthorized, match="unknown signing key"):
            await auth.authenticate(f"Bearer {old.token()}", None)


async def test_stale_key_set_is_refreshed_in_the_background(keys):
    old, new, _ = keys
    async with JwksServer(old.jwks(new)) as srv:
        auth = Authenticator(jwks_url=srv.url, issuer=ISS, audience=AUD, jwks_max_age=0.1, jwks_min_refetch=0.1)
        await auth.start()
        srv.doc = new.jwks()  # the issuer retires the old key; no unknown kid will tell us
        await asyncio.sleep(0.15)
        assert await auth.authenticate(f"Bearer {old.token()}", None)  # answered at once, refresh started
        for _ in range(100):
            if srv.requests == 2 and "k-old" not in auth.jwks.keys:
                break
            await asyncio.sleep(0.01)
        with pytest.raises(Unauthorized, match="unknown signing key"):
            await auth.authenticate(f"Bearer {old.token()}", None)
        await auth.close()


async def test_unreachable_jwks_is_unavailable(keys):
    old, _, _ = keys
    port = free_port()
    auth = Authenticator(jwks_url=f"http://127.0.0.1:{port}/.well-known/jwks.json", issuer=ISS, audience=AUD,
                         jwks_timeout=1.0, jwks_min_refetch=0.2)
    with pytest.raises(Unavailable) as info:
        await auth.authenticate(f"Bearer {old.token()}", None)
    assert info.value.status == 503 and info.value.reason == "jwks_unavailable"
    assert auth.jwks.last_error  # the cause, for the log and the admin API


async def _refused_within(auth: Authenticator, token: str, seconds: float) -> None:
    started = time.monotonic()
    while time.monotonic() - started < seconds:
        try:
            await auth.authenticate(f"Bearer {token}", None)
        except Unauthorized as exc:
            assert "revoked" in exc.headers["WWW-Authenticate"]
            return
        await asyncio.sleep(0.01)
    pytest.fail(f"revoked token still accepted {seconds:g} s after the revocation was published")


async def test_revocation_on_the_sso_stream_rejects_a_cached_token_and_bad_events_are_skipped(nats_server, keys):
    from meshkit.basis.bus import Bus, Envelope
    from meshkit.sso_sdk.events import TOKEN_REVOKED, TokenRevoked, revocation_stream

    old, _, _ = keys
    auth = Authenticator(jwks=old.jwks(), issuer=ISS, audience=AUD)
    await auth.follow_revocations(nats_server)
    follower = auth._revocation_follower
    skipped = follower.skipped  # the session's stream may hold earlier tests' bad events
    publisher = await Bus(nats_server, source="sso", streams=[revocation_stream()]).connect()
    try:
        claims = old.claims("carol")
        token = old.sign(claims)
        assert await auth.authenticate(f"Bearer {token}", None)  # now cached
        # Not an envelope, an envelope of another type, a revocation without a jti: logged and skipped.
        await publisher.js.publish(TOKEN_REVOKED, b"not json")
        await publisher.publish_envelope(Envelope(type="sso.token.other", source="test", data={"jti": claims["jti"]}),
                                         subject=TOKEN_REVOKED)
        await publisher.publish_envelope(Envelope(type=TOKEN_REVOKED, source="test", data={"exp": claims["exp"]}))
        await publisher.publish(TokenRevoked(jti=claims["jti"], exp=claims["exp"]), id=claims["jti"])
        await _refused_within(auth, token, 1.0)
        assert follower.skipped - skipped == 3 and follower.handled >= 1
        # The revocation outlives exp by the verifier's leeway (the token is accepted that long past exp).
        assert auth.revoked._until[claims["jti"]] == claims["exp"] + auth.verifier.leeway
    finally:
        await publisher.close()
        await auth.close()


async def test_a_gateway_that_starts_after_the_revocation_replays_it(nats_server, keys):
    from meshkit.basis.bus import Bus
    from meshkit.sso_sdk.events import TokenRevoked, revocation_stream

    old, _, _ = keys
    claims = old.claims("dave")
    token = old.sign(claims)
    publisher = await Bus(nats_server, source="sso", streams=[revocation_stream()]).connect()
    try:
        await publisher.publish(TokenRevoked(jti=claims["jti"], exp=claims["exp"]), id=claims["jti"])
    finally:
        await publisher.close()
    auth = Authenticator(jwks=old.jwks(), issuer=ISS, audience=AUD)
    try:
        await auth.follow_revocations(nats_server)  # returns once the stored revocations are applied
        with pytest.raises(Unauthorized, match="revoked"):
            await auth.authenticate(f"Bearer {token}", None)
        assert (await auth.authenticate(f"Bearer {old.token('erin')}", None)).subject == "erin"
    finally:
        await auth.close()


async def test_follow_revocations_without_nats_is_a_clear_error(keys):
    old, _, _ = keys
    auth = Authenticator(jwks=old.jwks(), issuer=ISS, audience=AUD)
    with pytest.raises(Unavailable, match="did not answer") as info:
        await auth.follow_revocations(f"nats://127.0.0.1:{free_port()}", connect_timeout=0.5)
    assert info.value.reason == "nats_unavailable" and auth._nats is None
    await auth.close()
