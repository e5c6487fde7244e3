"""The SSO's revocations on JetStream (stream ``SSO``): once per jti, kept as long as a token lives,
replayed by every instance that starts later, republished when they went missing, never fatal."""

from __future__ import annotations

import asyncio
import time
import uuid

import httpx
import pytest

from helpers.sso import Revocations, bearer, jti_of, settings_for, signup_login
from helpers.waiting import until
from meshkit.basis.bus import Envelope
from meshkit.basis.errors import Unavailable
from meshkit.basis.natsd import EmbeddedNats, free_port
from meshkit.basis.testing import running
from meshkit.sso.adapters import BusPublisher
from meshkit.sso.app.tokens import LEEWAY
from meshkit.sso.main import build
from meshkit.sso.settings import SsoSettings
from meshkit.sso_sdk.events import DEFAULT_RETENTION, STREAM, TOKEN_REVOKED


@pytest.fixture
async def publisher(nats_server):
    pub = BusPublisher(nats_server, retention=DEFAULT_RETENTION)
    await pub.start()
    yield pub
    await pub.close()


async def stored(pub: BusPublisher) -> int:
    return (await pub.bus.js.stream_info(STREAM)).state.messages


async def test_a_revocation_published_twice_is_stored_once(publisher):
    seen: list[str] = []
    await publisher.follow(lambda jti, exp: seen.append(jti))
    jti, exp = uuid.uuid4().hex, time.time() + 60
    before = await stored(publisher)
    await publisher.revoked(jti, exp)
    await publisher.revoked(jti, exp)  # a retried publish: same event id (the jti)
    assert await stored(publisher) == before + 1
    last = await publisher.bus.js.get_last_msg(STREAM, TOKEN_REVOKED)
    env = Envelope.from_json(last.data)
    assert env.id == jti and env.type == TOKEN_REVOKED and env.source == "sso"
    assert env.data.jti == jti and env.data.exp == exp
    await until(lambda: jti in seen, 5.0)
    await asyncio.sleep(0.1)
    assert seen.count(jti) == 1


async def test_the_sso_owns_the_streams_retention(nats_server):
    for retention in (DEFAULT_RETENTION + 600, DEFAULT_RETENTION):
        pub = BusPublisher(nats_server, retention=retention)
        await pub.start()
        try:
            config = (await pub.bus.js.stream_info(STREAM)).config
            assert config.max_age == retention and config.subjects == ["sso.>"]
            assert config.duplicate_window <= retention
        finally:
            await pub.close()


def test_retention_covers_the_access_token_lifetime(tmp_path):
    assert SsoSettings(data_dir=tmp_path).revocation_max_age == 900 + 300
    assert SsoSettings(data_dir=tmp_path, access_ttl=3600).revocation_max_age == 3900
    assert SsoSettings(data_dir=tmp_path, access_ttl=600, revocation_retention=7200).revocation_max_age == 7200
    with pytest.raises(ValueError, match=r"SSO_REVOCATION_RETENTION .* shorter than SSO_ACCESS_TTL"):
        SsoSettings(data_dir=tmp_path, access_ttl=3600, revocation_retention=600)


async def test_bad_events_on_the_subject_are_skipped_not_fatal(publisher, caplog):
    seen: list[str] = []
    await publisher.follow(lambda jti, exp: seen.append(jti))
    js = publisher.bus.js
    await js.publish(TOKEN_REVOKED, b"\xff not json")
    await publisher.bus.publish_envelope(Envelope(type=TOKEN_REVOKED, source="x", data={"jti": "", "exp": "soon"}))
    await publisher.bus.publish_envelope(Envelope(type="sso.token.minted", source="x", data={"jti": "a"}),
                                         subject=TOKEN_REVOKED)
    good = uuid.uuid4().hex
    await publisher.revoked(good, time.time() + 60)
    await until(lambda: good in seen, 5.0)
    assert publisher.follower.skipped >= 3
    assert "skipping" in caplog.text


async def test_stored_revocations_missing_from_the_stream_are_republished(publisher, nats_server):
    await publisher.follow(lambda jti, exp: None)
    on_bus, lost, expired = uuid.uuid4().hex, uuid.uuid4().hex, uuid.uuid4().hex
    await publisher.revoked(on_bus, time.time() + 60)
    await until(lambda: publisher.follower.last_seq > 0, 5.0)
    # The replay is over: what the table holds and the stream did not is published, the rest is not.
    before = await stored(publisher)
    assert await publisher.republish_missing([(lost, time.time() + 60), (expired, time.time() - LEEWAY - 1)]) == 1
    assert await stored(publisher) == before + 1
    Revocations.url = nats_server
    async with Revocations() as bus:  # a later follower sees it
        assert await bus.wait_for(lost) and expired not in bus.seen


async def test_an_sso_instance_started_later_learns_revocations_from_the_stream(nats_server, tmp_path):
    first = settings_for(f"sqlite+aiosqlite:///{tmp_path / 'a.db'}", nats_server, tmp_path / "a")
    second = settings_for(f"sqlite+aiosqlite:///{tmp_path / 'b.db'}", nats_server, tmp_path / "b")
    async with running(build(first)) as a:
        async with httpx.AsyncClient(base_url=a.url) as c:
            _, pair = await signup_login(c)
            assert (await c.post("/v1/logout", headers=bearer(pair))).status_code == 204
    # Its own database has never heard of that token: only the stream can tell it.
    async with running(build(second)) as b:
        assert b.state["tokens"].is_revoked(jti_of(pair["access_token"]))


async def test_a_publish_while_nats_is_away_is_retried_not_failed(tmp_path):
    port = free_port()
    server = await EmbeddedNats(port=port, data_dir=tmp_path / "nats").start()
    pub = BusPublisher(server.url, retention=DEFAULT_RETENTION, publish_timeout=1.0, retry_interval=0.2)
    try:
        await pub.start()
        await server.stop()
        jti = uuid.uuid4().hex
        t0 = time.monotonic()
        await pub.revoked(jti, time.time() + 60)  # a logout does not fail for want of NATS
        assert time.monotonic() - t0 < 2.0 and jti in pub._unsent
        server = await EmbeddedNats(port=port, data_dir=tmp_path / "nats").start()
        await until(lambda: not pub._unsent, 10.0)
        Revocations.url = server.url
        async with Revocations() as bus:
            assert await bus.wait_for(jti)
    finally:
        await pub.close()
        await server.stop()


async def test_the_sso_does_not_start_without_nats(tmp_path):
    settings = settings_for(f"sqlite+aiosqlite:///{tmp_path / 'x.db'}", f"nats://127.0.0.1:{free_port()}", tmp_path)
    pub = BusPublisher(settings.nats_url, retention=settings.revocation_max_age)
    with pytest.raises(Unavailable, match="did not answer within 1 s") as info:
        await pub.start(timeout=1.0)
    assert info.value.reason == "nats_unavailable"
