"""The gateway in front of real upstreams registered in a real NATS registry.

Upstreams are small HTTP servers (in this process, or child processes where a
SIGKILL is needed) that register themselves through ``Registration``; the
gateway finds them through its registry view, as in production.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid

import jwt
import orjson
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from meshkit.basis.http import HttpTransport
from meshkit.basis.instance import Instance
from meshkit.basis.registry import open_registry
from meshkit.basis.registry.registration import Registration
from meshkit.gateway.app import Gateway
from meshkit.gateway.messages import Response
from meshkit.gateway.server import serve
from meshkit.gateway.settings import GatewaySettings


class Upstream:
    """An in-process upstream instance whose behaviour a test can change."""

    def __init__(self, service: str, name: str, version: str = "1.0") -> None:
        self.service, self.name, self.version = service, name, version
        self.status = 200
        self.delay = 0.0
        self.headers: list[tuple[bytes, bytes]] = []
        self.calls = 0
        self.server = self.registration = None

    async def handle(self, req):
        self.calls += 1
        if self.delay:
            await asyncio.sleep(self.delay)
        body = orjson.dumps({"instance": self.name, "version": self.version, "target": req.target,
                             "method": req.method, "body": req.body.decode(),
                             "headers": {k.decode(): v.decode() for k, v in req.headers}})
        return Response(self.status, [(b"content-type", b"application/json"), *self.headers], body)

    async def start(self, registry) -> Upstream:
        self.server = await serve(self.handle, "127.0.0.1", 0)
        inst = Instance(self.service, self.name, "127.0.0.1", self.server.port, version=self.version)
        self.registration = Registration(registry, inst, ttl=3.0, interval=1.0)
        await self.registration.start()
        return self

    async def stop(self) -> None:
        await self.registration.stop()
        await self.server.stop(0.5)


CHILD = r"""
import asyncio, sys
import orjson
from meshkit.basis.instance import Instance
from meshkit.basis.registry import open_registry
from meshkit.basis.registry.registration import Registration
from meshkit.gateway.messages import Response
from meshkit.gateway.server import serve


async def handle(req):
    return Response(200, [(b"content-type", b"application/json")], orjson.dumps({"instance": sys.argv[3]}))

async def main():
    registry = await open_registry(sys.argv[1])
    server = await serve(handle, "127.0.0.1", 0)
    await Registration(registry, Instance(sys.argv[2], sys.argv[3], "127.0.0.1", server.port)).start()
    print("ready", flush=True)
    await asyncio.Event().wait()

asyncio.run(main())
"""


@pytest.fixture
async def env(nats_server, tmp_path):
    """A fresh registry bucket, a client transport, and helpers to start upstreams and gateways."""
    url = f"{nats_server}?bucket=gw_{uuid.uuid4().hex[:10]}"
    registry = await open_registry(url)
    transport = HttpTransport()
    started: list = []

    class Env:
        pass

    e = Env()
    e.url, e.registry, e.transport, e.tmp = url, registry, transport, tmp_path

    async def upstream(service: str, name: str, version: str = "1.0") -> Upstream:
        u = await Upstream(service, name, version).start(registry)
        started.append(u)
        return u

    async def gateway(routes: str, **kw) -> Gateway:
        f = tmp_path / f"routes-{uuid.uuid4().hex[:6]}.yaml"
        f.write_text(routes)
        extra = {k: kw.pop(k) for k in ("authenticator", "limiter") if k in kw}
        settings = GatewaySettings(host="127.0.0.1", port=0, admin_port=0, routes_file=f, registry_url=url,
                                   access_log=False, reload_interval=0.1, **kw)
        gw = await Gateway(settings, register=False, **extra).start()
        started.append(gw)
        return gw

    async def get(gw: Gateway, path: str, method: str = "GET", headers=None, body: bytes = b""):
        return await transport.request("127.0.0.1", gw.port, method, path, headers=headers, body=body, timeout=10)

    e.upstream, e.gateway, e.get = upstream, gateway, get
    yield e
    for thing in reversed(started):
        await thing.stop(0.5) if isinstance(thing, Gateway) else await thing.stop()
    await transport.close()
    await registry.close()


def routes(*blocks: str) -> str:
    return "routes:\n" + "".join(blocks)


async def test_routing_rewrite_headers_and_404(env):
    await env.upstream("catalog", "c1")
    gw = await env.gateway(routes("""
  - name: catalog
    match: {prefix: /api/catalog/}
    upstream: {service: catalog}
    rewrite: {prefix: /}
"""))
    await gw.view.wait_for("catalog", 1)
    tp = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    r = await env.get(gw, "/api/catalog/products?limit=5", headers=[
        (b"x-request-id", b"req-123"), (b"traceparent", tp.encode()),
        (b"x-meshkit-subject", b"admin"), (b"x-meshkit-roles", b"admin"), (b"x-meshkit-permissions", b"*")])
    assert r.status == 200 and r.header("x-request-id") == "req-123"
    seen = r.json()
    assert seen["target"] == "/products?limit=5"
    h = seen["headers"]
    # a client can never spoof identity: every identity header it sent is gone
    assert not any(k.startswith("x-meshkit-") for k in h)
    assert h["x-request-id"] == "req-123"
    assert h["traceparent"].startswith("00-0af7651916cd43dd8448eb211c80319c-")
    assert h["traceparent"] != tp  # a child span: same trace, new span id
    assert int(h["x-deadline-ms"]) > 0 and h["x-forwarded-for"] == "127.0.0.1"
    r = await env.get(gw, "/api/nothing")
    assert r.status == 404 and r.json()["error"]["reason"] == "no_route"
    r = await env.get(gw, "/api/catalog/../admin")
    assert r.status == 400
    assert (await env.get(gw, "/livez")).status == 200
    assert (await env.get(gw, "/readyz")).json()["status"] == "ready"
    metrics = (await env.get(gw, "/metrics")).body.decode()
    assert 'gateway_requests_total{route="catalog",method="GET",status="200"} 1' in metrics


async def test_canary_split_within_five_percent_and_blue_green_switch(env):
    await env.upstream("shop", "v1-a", "1.0")
    await env.upstream("shop", "v2-a", "2.0")
    gw = await env.gateway(routes("""
  - name: shop
    match: {prefix: /}
    upstream: {service: shop, canary: {version: "2.0", percent: 20}}
"""))
    await gw.view.wait_for("shop", 2)
    counts = {"1.0": 0, "2.0": 0}
    sem = asyncio.Semaphore(16)

    async def one():
        async with sem:
            r = await env.get(gw, "/x")
            counts[r.json()["version"]] += 1

    await asyncio.gather(*(one() for _ in range(2000)))
    share = counts["2.0"] / 2000 * 100
    assert 15.0 <= share <= 25.0, counts
    # Blue-green: one line changed, reloaded, everything goes to 2.0 with no restart.
    gw.routes_path.write_text(routes("""
  - name: shop
    match: {prefix: /}
    upstream: {service: shop, version: "2.0"}
"""))
    gw.reload()
    versions = {(await env.get(gw, "/x")).json()["version"] for _ in range(50)}
    assert versions == {"2.0"}


async def test_a_blue_green_switch_is_not_answered_from_the_old_side_s_cache(env):
    # Before: the response cache was keyed by route name, so after the switch the answers
    # cached from the old version were served until their TTL ran out.
    await env.upstream("bg", "blue", "1.0")
    await env.upstream("bg", "green", "2.0")
    gw = await env.gateway(routes("""
  - name: bg
    match: {prefix: /}
    upstream: {service: bg, version: "1.0"}
    cache: {ttl: 60s}
"""))
    await gw.view.wait_for("bg", 2)
    assert (await env.get(gw, "/x")).json()["version"] == "1.0"
    cached = await env.get(gw, "/x")
    assert cached.json()["version"] == "1.0" and cached.header("x-cache") == "HIT"
    gw.routes_path.write_text(routes("""
  - name: bg
    match: {prefix: /}
    upstream: {service: bg, version: "2.0"}
    cache: {ttl: 60s}
"""))
    gw.reload()
    assert (await env.get(gw, "/x")).json()["version"] == "2.0"


async def test_a_routes_file_caught_half_written_is_not_loaded(env):
    # Before: a change was loaded at the first look. A file caught mid-write can be valid YAML
    # without the routes still to come, and those answered 404 until the next look.
    await env.upstream("hw", "h1")
    both = routes("""
  - name: first
    match: {prefix: /a/}
    upstream: {service: hw}
""", """
  - name: second
    match: {prefix: /b/}
    upstream: {service: hw}
""")
    gw = await env.gateway(both)
    await gw.view.wait_for("hw", 1)
    gw._watch.cancel()  # this test looks at the file itself, one poll at a time
    before = gw.reloads
    gw.routes_path.write_text(both.split("  - name: second")[0])  # mid-write: the second route not there yet
    gw._poll_file()
    gw.routes_path.write_text(both + "  # edited\n")
    gw._poll_file()
    assert gw.reloads == before and (await env.get(gw, "/b/x")).status == 200
    gw._poll_file()  # unchanged for a whole interval: loaded now
    assert gw.reloads == before + 1 and (await env.get(gw, "/b/x")).status == 200


async def test_sticky_canary_keeps_a_client_on_one_side(env):
    await env.upstream("sticky", "a", "1.0")
    await env.upstream("sticky", "b", "2.0")
    gw = await env.gateway(routes("""
  - name: s
    match: {prefix: /}
    upstream: {service: sticky, canary: {version: "2.0", percent: 50, sticky: client}}
"""))
    await gw.view.wait_for("sticky", 2)
    versions = {(await env.get(gw, "/x")).json()["version"] for _ in range(40)}
    assert len(versions) == 1


async def test_failover_when_an_instance_is_sigkilled_under_load(env):
    procs = [subprocess.Popen([sys.executable, "-c", CHILD, env.url, "victims", f"v{i}"], stdout=subprocess.PIPE,  # noqa: ASYNC220
                              start_new_session=True) for i in range(2)]
    try:
        for p in procs:
            assert (await asyncio.to_thread(p.stdout.readline)).strip() == b"ready"
        gw = await env.gateway(routes("""
  - name: v
    match: {prefix: /}
    upstream: {service: victims}
    retry: {attempts: 2, backoff: 5ms}
"""), eject_for=5.0)
        await gw.view.wait_for("victims", 2)
        stop = asyncio.Event()
        results: list[int] = []

        async def client():
            while not stop.is_set():
                r = await env.get(gw, "/item")
                results.append(r.status)

        clients = [asyncio.create_task(client()) for _ in range(16)]
        await asyncio.sleep(0.5)
        procs[0].send_signal(signal.SIGKILL)
        before = len(results)
        await asyncio.sleep(1.5)
        stop.set()
        await asyncio.gather(*clients)
        assert len(results) - before > 100  # traffic kept flowing after the kill
        assert set(results) == {200}, {s: results.count(s) for s in set(results)}
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
            p.wait()


async def test_failing_instance_is_ejected_then_returns(env):
    good = await env.upstream("flaky", "good")
    bad = await env.upstream("flaky", "bad")
    bad.status = 500
    gw = await env.gateway(routes("""
  - name: f
    match: {prefix: /}
    upstream: {service: flaky, balancer: round_robin}
    retry: {attempts: 0}
"""), eject_after=3, eject_for=0.5, breaker_min_calls=1000)
    await gw.view.wait_for("flaky", 2)
    statuses = [(await env.get(gw, "/x")).status for _ in range(30)]
    assert statuses.count(500) == 3  # three in a row on "bad", then it is out
    admin = await env.transport.request("127.0.0.1", gw.admin_port, "GET", "/admin/upstreams")
    members = {m["instance"]: m for m in admin.json()["flaky"]["members"]}
    assert members["bad"]["ejected"] is True and members["good"]["ejected"] is False
    bad.status = 200
    calls = bad.calls
    await asyncio.sleep(0.6)
    for _ in range(10):
        assert (await env.get(gw, "/x")).status == 200
    assert bad.calls > calls  # back in rotation after its ejection period
    assert good.calls > 0


async def test_retry_on_503_goes_to_another_instance_only_for_idempotent(env):
    a = await env.upstream("retry", "a")
    b = await env.upstream("retry", "b")
    a.status = 503
    gw = await env.gateway(routes("""
  - name: r
    match: {prefix: /}
    upstream: {service: retry}
    retry: {attempts: 2, backoff: 1ms}
"""), eject_after=1000)
    await gw.view.wait_for("retry", 2)
    for _ in range(10):
        r = await env.get(gw, "/x")
        assert r.status == 200 and r.json()["instance"] == "b"
    posts = [(await env.get(gw, "/x", method="POST", body=b"{}")).status for _ in range(20)]
    assert 503 in posts  # never retried: a POST may have had an effect
    assert b.calls >= 10


async def test_hot_reload_under_load_drops_nothing(env):
    await env.upstream("one", "o1")
    await env.upstream("two", "t1")
    first = routes("""
  - name: r
    match: {prefix: /}
    upstream: {service: one}
""")
    gw = await env.gateway(first)
    await gw.view.wait_for("one", 1)
    await gw.view.wait_for("two", 1)
    stop = asyncio.Event()
    results: list[tuple[int, str]] = []

    async def client():
        while not stop.is_set():
            r = await env.get(gw, "/x")
            results.append((r.status, r.json().get("instance", "")))

    clients = [asyncio.create_task(client()) for _ in range(16)]
    second = first.replace("service: one", "service: two")
    for i in range(10):
        await asyncio.sleep(0.05)
        gw.routes_path.write_text(second if i % 2 == 0 else first)
        gw.reload()
    # and once through the file watcher
    gw.routes_path.write_text(second + "    timeout: 9s\n")
    await asyncio.sleep(0.4)
    stop.set()
    await asyncio.gather(*clients)
    assert gw.reloads >= 11
    assert len(results) > 200 and {s for s, _ in results} == {200}
    assert {i for _, i in results} == {"o1", "t1"}
    # A broken file is refused and the old table keeps serving.
    gw.routes_path.write_text("routes:\n  - name: broken\n")
    r = await env.transport.request("127.0.0.1", gw.admin_port, "POST", "/admin/reload")
    assert r.status == 400 and f"{gw.routes_path}:2: routes[0].match" in r.json()["error"]["message"]
    assert (await env.get(gw, "/x")).status == 200


@pytest.mark.timing
async def test_aggregation_returns_the_parts_that_answered(env):
    await env.upstream("users", "u1")
    orders = await env.upstream("orders", "o1")
    gw = await env.gateway(routes("""
  - name: profile
    match: {path: "/profile/{id}"}
    aggregate:
      parts:
        user: {service: users, path: "/users/{id}", timeout: 1s}
        orders: {service: orders, path: "/orders?user={id}", timeout: 200ms}
        missing: {service: nobody, path: "/x", timeout: 200ms}
"""))
    await gw.view.wait_for("orders", 1)
    await gw.view.wait_for("users", 1)
    orders.delay = 2.0  # much slower than its part timeout
    t0 = time.monotonic()
    r = await env.get(gw, "/profile/42")
    assert time.monotonic() - t0 < 1.5  # the 200 ms part timeout, not the 2 s answer
    assert r.status == 200
    body = r.json()
    assert body["user"]["target"] == "/users/42"
    assert sorted(body["_missing"]) == ["missing", "orders"]
    assert sorted(r.header("x-missing-parts").split(",")) == ["missing", "orders"]
    orders.delay = 0
    body = (await env.get(gw, "/profile/7")).json()
    assert body["orders"]["target"] == "/orders?user=7" and body["_missing"] == ["missing"]


async def test_cache_hit_then_stale_on_error_then_fallback(env):
    u = await env.upstream("cached", "c1")
    gw = await env.gateway(routes("""
  - name: c
    match: {prefix: /c/}
    upstream: {service: cached}
    cache: {ttl: 200ms, stale_if_error: 30s}
    retry: {attempts: 0}
  - name: fb
    match: {prefix: /fb/}
    upstream: {service: cached}
    retry: {attempts: 0}
    fallback: {status: 200, body: {items: [], degraded: true}}
"""), eject_after=1000)
    await gw.view.wait_for("cached", 1)
    r1 = await env.get(gw, "/c/x")
    r2 = await env.get(gw, "/c/x")
    assert r1.header("x-cache") == "MISS" and r2.header("x-cache") == "HIT" and r2.header("age") == "0"
    assert r1.body == r2.body and u.calls == 1
    r3 = await env.get(gw, "/c/x", headers={"cache-control": "no-cache"})
    assert r3.header("x-cache") == "MISS" and u.calls == 2  # not looked up, but stored
    u.status = 503
    await asyncio.sleep(0.25)
    r = await env.get(gw, "/c/x")
    assert r.status == 200 and r.header("x-cache") == "STALE" and r.body == r3.body
    r = await env.get(gw, "/c/other")  # nothing cached: the error passes through
    assert r.status == 503
    r = await env.get(gw, "/fb/x")
    assert r.status == 200 and r.json() == {"items": [], "degraded": True} and r.header("x-fallback") == "true"
    # errors and private answers are never cached
    u.status = 200
    u.headers = [(b"cache-control", b"private")]
    await env.get(gw, "/c/private")
    assert (await env.get(gw, "/c/private")).header("x-cache") == "MISS"
    purge = await env.transport.request("127.0.0.1", gw.admin_port, "POST", "/admin/cache/purge?route=c")
    assert purge.json()["purged"] >= 1


async def test_bulkhead_sheds_and_fault_injection_aborts(env):
    u = await env.upstream("slow", "s1")
    u.delay = 0.3
    gw = await env.gateway(routes("""
  - name: slow
    match: {prefix: /slow/}
    upstream: {service: slow}
    limits: {max_concurrency: 2, queue_timeout: 50ms}
  - name: chaos
    match: {prefix: /chaos/}
    upstream: {service: slow}
    fault: {abort_percent: 100, abort_status: 418}
"""))
    await gw.view.wait_for("slow", 1)
    rs = await asyncio.gather(*(env.get(gw, "/slow/x") for _ in range(6)))
    statuses = sorted(r.status for r in rs)
    assert statuses.count(200) == 2 and statuses.count(503) == 4
    shed = next(r for r in rs if r.status == 503)
    assert shed.header("retry-after") == "1" and shed.json()["error"]["reason"] == "overloaded"
    r = await env.get(gw, "/chaos/x")
    assert r.status == 418 and r.json()["error"]["reason"] == "fault_injected"


def _jwks_and_signer():
    key = Ed25519PrivateKey.generate()
    raw = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    jwks = {"keys": [{"kty": "OKP", "crv": "Ed25519", "kid": "k1", "alg": "EdDSA", "use": "sig",
                      "x": base64.urlsafe_b64encode(raw).rstrip(b"=").decode()}]}

    def token(sub: str, permissions: list[str], **extra) -> str:
        now = int(time.time())
        claims = {"sub": sub, "iss": "test-sso", "aud": "meshkit", "iat": now, "exp": now + 600,
                  "jti": os.urandom(6).hex(), "permissions": permissions, **extra}
        return jwt.encode(claims, key, algorithm="EdDSA", headers={"kid": "k1"})

    return jwks, token


async def test_auth_permissions_identity_injection_and_rate_limit(env):
    from meshkit.gateway.security import Authenticator, open_rate_limiter

    jwks, token = _jwks_and_signer()
    await env.upstream("catalog", "c1")
    gw = await env.gateway(routes("""
  - name: read
    match: {prefix: /api/catalog/, methods: [GET]}
    upstream: {service: catalog}
    rewrite: {prefix: /}
    auth: optional
    rate_limit: {rate: 1, burst: 3, key: ip}
  - name: write
    match: {prefix: /api/catalog/, methods: [POST]}
    upstream: {service: catalog}
    rewrite: {prefix: /}
    auth: required
    permissions: ["catalog:write"]
"""), authenticator=Authenticator(jwks=jwks, issuer="test-sso", audience="meshkit"),
        limiter=open_rate_limiter("memory://"))
    await gw.view.wait_for("catalog", 1)
    r = await env.get(gw, "/api/catalog/p", method="POST", body=b"{}")
    assert r.status == 401 and r.header("www-authenticate").startswith("Bearer")
    r = await env.get(gw, "/api/catalog/p", method="POST", body=b"{}",
                      headers={"authorization": "Bearer not.a.token"})
    assert r.status == 401 and "invalid_token" in r.header("www-authenticate")
    reader = token("bob", ["catalog:read"])
    r = await env.get(gw, "/api/catalog/p", method="POST", body=b"{}", headers={"authorization": f"Bearer {reader}"})
    assert r.status == 403 and "catalog:write" in r.json()["error"]["message"]
    writer = token("alice", ["catalog:write"])
    r = await env.get(gw, "/api/catalog/p", method="POST", body=b"{}", headers=[
        (b"authorization", f"Bearer {writer}".encode()), (b"x-meshkit-subject", b"mallory"),
        (b"x-meshkit-permissions", b"everything")])
    assert r.status == 200
    h = r.json()["headers"]
    assert h["x-meshkit-subject"] == "alice" and h["x-meshkit-permissions"] == "catalog:write"
    # Anonymous reads pass (auth optional), spoofed identity is stripped, then the bucket runs dry.
    statuses = []
    for _ in range(5):
        r = await env.get(gw, "/api/catalog/p", headers={"x-meshkit-subject": "mallory"})
        statuses.append(r.status)
        if r.status == 200:
            assert "x-meshkit-subject" not in r.json()["headers"]
            assert r.header("ratelimit-limit") == "3"
    assert statuses[:3] == [200, 200, 200] and statuses[3] == 429
    assert r.header("retry-after") is not None and r.json()["error"]["reason"] == "rate_limited"


@contextlib.asynccontextmanager
async def one_slot_stream_route(env, answer):
    """A raw upstream answering each request with ``await answer(writer)``, behind a streaming
    route with one bulkhead slot; yields the gateway."""
    async def serve_one(reader, writer):
        try:
            while True:
                await reader.readuntil(b"\r\n\r\n")
                await answer(writer)
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    up = await asyncio.start_server(serve_one, "127.0.0.1", 0)
    port = up.sockets[0].getsockname()[1]
    try:
        yield await env.gateway(routes(f"""
  - name: files
    match: {{prefix: /f/}}
    upstream: {{url: "http://127.0.0.1:{port}"}}
    stream: true
    limits: {{max_concurrency: 1, queue_timeout: 50ms}}
"""))
    finally:
        up.close()


async def test_a_streamed_answer_holds_its_bulkhead_slot_until_its_body_is_sent(env):
    # Before: a streaming route gave its slot back once the upstream's headers arrived, so
    # max_concurrency bounded nothing for long downloads.
    release = asyncio.Event()

    async def slow(writer):
        writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nfirst\r\n")
        await writer.drain()
        await release.wait()
        writer.write(b"4\r\nlast\r\n0\r\n\r\n")
        await writer.drain()

    async with one_slot_stream_route(env, slow) as gw:
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
            writer.write(b"GET /f/big HTTP/1.1\r\nHost: x\r\n\r\n")
            head = await reader.readuntil(b"first")
            assert head.startswith(b"HTTP/1.1 200")  # streaming: its body is still coming
            second = await env.get(gw, "/f/other")
            assert second.status == 503  # the one slot is the first download's until its body is out
            release.set()
            assert (await reader.readuntil(b"0\r\n\r\n")).endswith(b"last\r\n0\r\n\r\n")
            await asyncio.sleep(0.05)
            third = await env.get(gw, "/f/again")
            assert third.status == 200 and third.body == b"firstlast"
            writer.close()
        finally:
            release.set()


async def test_a_streamed_request_whose_client_left_before_the_answer_frees_its_slot(env):
    async def late(writer):
        await asyncio.sleep(0.2)  # the client is gone by the time the headers come
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
        await writer.drain()

    async with one_slot_stream_route(env, late) as gw:
        _, writer = await asyncio.open_connection("127.0.0.1", gw.port)
        writer.write(b"GET /f/a HTTP/1.1\r\nHost: x\r\n\r\n")
        await writer.drain()
        await asyncio.sleep(0.05)
        writer.close()
        await asyncio.sleep(0.4)  # the answer came for nobody: dropped, its slot and upstream freed
        r = await env.get(gw, "/f/b")
        assert r.status == 200 and r.body == b"ok"
