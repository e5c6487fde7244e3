"""ServiceClient against real HTTP servers on loopback, found through a registry view.

Upstreams are small Starlette apps served by uvicorn in this process on free
ports; "down" instances are registered ports where nothing listens, and a raw
asyncio server that reads a request and hangs up plays a crashing instance.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections import Counter

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from meshkit.basis import context as ctxmod
from meshkit.basis.client.breaker import CircuitBreaker
from meshkit.basis.client.outlier import OutlierDetector
from meshkit.basis.client.retry import Backoff, RetryBudget
from meshkit.basis.client.service_client import ServiceClient
from meshkit.basis.errors import BadGateway, GatewayTimeout, NotFound, Unavailable
from meshkit.basis.http import HttpTransport
from meshkit.basis.instance import Instance
from meshkit.basis.natsd import free_port
from meshkit.basis.registry.memory import MemoryRegistry
from meshkit.basis.registry.view import RegistryView


class Upstream:
    """One instance: echoes what it received; ``status`` forces an answer code."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.hits: Counter[str] = Counter()
        self.status: int | None = None  # when set, every request gets this status
        self.port = free_port()
        self.server: uvicorn.Server | None = None
        self.task: asyncio.Task | None = None

    def app(self) -> Starlette:
        async def echo(request: Request) -> Response:
            self.hits[request.method] += 1
            if self.status is not None:
                return JSONResponse({"error": {"reason": "forced", "message": self.name}}, self.status)
            return JSONResponse({
                "instance": self.name, "method": request.method, "path": request.url.path,
                "query": dict(request.query_params), "headers": dict(request.headers),
                "body": (await request.body()).decode(),
            })

        async def slow(request: Request) -> Response:
            self.hits["slow"] += 1
            await asyncio.sleep(float(request.query_params.get("s", "1")))
            return JSONResponse({"instance": self.name})

        async def missing(request: Request) -> Response:
            return JSONResponse({"error": {"reason": "product.not_found", "message": "no such product"}}, 404)

        return Starlette(routes=[
            Route("/echo", echo, methods=["GET", "POST", "PUT", "PATCH", "DELETE"]),
            Route("/slow", slow),
            Route("/missing", missing),
        ])

    async def start(self) -> Upstream:
        config = uvicorn.Config(self.app(), host="127.0.0.1", port=self.port, log_level="error",
                                lifespan="off", access_log=False,
                                timeout_graceful_shutdown=0.1)
        self.server = uvicorn.Server(config)
        self.task = asyncio.create_task(self.server.serve())
        while not self.server.started:
            await asyncio.sleep(0.01)
        return self

    async def stop(self) -> None:
        if self.server is not None and self.task is not None:
            self.server.should_exit = True
            await self.task


class Dropper:
    """An instance that accepts the request, reads it, and closes without answering."""

    def __init__(self) -> None:
        self.requests = 0
        self.server: asyncio.Server | None = None
        self.port = 0

    async def start(self) -> Dropper:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            with contextlib.suppress(Exception):
                await reader.readuntil(b"\r\n\r\n")
                self.requests += 1
            writer.close()

        self.server = await asyncio.start_server(handle, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()


class Mesh:
    """A memory registry, its view, and helpers to register instances."""

    def __init__(self) -> None:
        self.registry = MemoryRegistry(f"memory://client-{uuid.uuid4().hex[:8]}")
        self.view = RegistryView(self.registry)
        self.service = f"svc{uuid.uuid4().hex[:6]}"

    async def add(self, name: str, port: int, **metadata) -> Instance:
        inst = Instance(self.service, name, "127.0.0.1", port, metadata=metadata)
        await self.registry.register(inst, ttl=60.0)
        return inst


@pytest.fixture
async def mesh():
    m = Mesh()
    await m.view.start()
    yield m
    await m.view.close()
    await m.registry.close()


@pytest.fixture
async def upstreams():
    started: list = []

    async def make(name: str) -> Upstream:
        u = await Upstream(name).start()
        started.append(u)
        return u

    yield make
    for u in started:
        await u.stop()


def client_for(mesh: Mesh, **kw) -> ServiceClient:
    kw.setdefault("backoff", Backoff(base=0.001, cap=0.005))
    return ServiceClient(mesh.view, caller="tester", transport=HttpTransport(), **kw)


async def wait_instances(mesh: Mesh, n: int) -> None:
    await mesh.view.wait_for(mesh.service, n, timeout=2.0)


async def test_get_post_params_and_errors(mesh, upstreams):
    a = await upstreams("a")
    await mesh.add("a", a.port)
    await wait_instances(mesh, 1)
    async with client_for(mesh) as client:
        r = await client.get(mesh.service, "/echo", params={"q": "x y", "n": 2})
        assert r.status == 200 and r.ok and r.attempts == 1 and r.instance == f"{mesh.service}.a"
        assert r.json()["query"] == {"q": "x y", "n": "2"}
        assert r.header("Content-Type") == "application/json"
        r = await client.post(mesh.service, "/echo", json={"k": [1, 2]})
        seen = r.json()
        assert seen["method"] == "POST" and seen["body"] == '{"k":[1,2]}'
        assert seen["headers"]["content-type"] == "application/json"
        r = await client.put(mesh.service, "/echo", body="raw", headers={"X-Extra": "1"})
        assert r.json()["body"] == "raw" and r.json()["headers"]["x-extra"] == "1"
        r = await client.get(mesh.service, "/missing")
        assert r.status == 404
        with pytest.raises(NotFound) as err:
            r.raise_for_status()
        assert err.value.reason == "product.not_found"
        with pytest.raises(Unavailable, match="no instance of service 'nobody'"):
            await client.get("nobody", "/echo")


async def test_context_headers_propagated(mesh, upstreams):
    a = await upstreams("a")
    await mesh.add("a", a.port)
    await wait_instances(mesh, 1)
    async with client_for(mesh) as client:
        # Without a current request: fresh ids, still carried.
        h = (await client.get(mesh.service, "/echo")).json()["headers"]
        assert h["x-meshkit-caller"] == "tester" and len(h["x-request-id"]) == 24
        assert ctxmod.parse_traceparent(h["traceparent"]) is not None
        assert 0 < int(h["x-deadline-ms"]) <= 5000
        assert ctxmod.SUBJECT not in h

        ctx = ctxmod.RequestContext(
            request_id="req-123", tracestate="vendor=1",
            identity=ctxmod.Identity("user-7", roles=frozenset({"admin"}), permissions=frozenset({"p:r"}),
                                     tenant="t1"),
            seal="v1.9999999999.abc",  # the gateway's seal on that identity goes with it
        )
        ctx.deadline = time.monotonic() + 0.8
        token = ctxmod.bind(ctx)
        try:
            h = (await client.get(mesh.service, "/echo")).json()["headers"]
        finally:
            ctxmod.reset(token)
        assert h["x-request-id"] == "req-123"
        trace_id, span_id, sampled = ctxmod.parse_traceparent(h["traceparent"])
        assert trace_id == ctx.trace_id and span_id != ctx.span_id and sampled
        assert h["tracestate"] == "vendor=1"
        assert h[ctxmod.SUBJECT] == "user-7" and h[ctxmod.ROLES] == "admin"
        assert h[ctxmod.PERMISSIONS] == "p:r" and h[ctxmod.TENANT] == "t1"
        assert h["x-meshkit-seal"] == "v1.9999999999.abc"
        assert 0 < int(h["x-deadline-ms"]) <= 800  # the caller's remaining budget, not the 5 s default


@pytest.mark.timing
async def test_deadline_enforced(mesh, upstreams):
    a = await upstreams("a")
    await mesh.add("a", a.port)
    await wait_instances(mesh, 1)
    async with client_for(mesh) as client:
        # A spent budget fails fast, without sending.
        ctx = ctxmod.RequestContext()
        ctx.deadline = time.monotonic() - 0.01
        token = ctxmod.bind(ctx)
        try:
            with pytest.raises(GatewayTimeout, match="deadline"):
                await client.get(mesh.service, "/echo")
        finally:
            ctxmod.reset(token)
        assert a.hits["GET"] == 0
        # A slow upstream is cut at the per-call timeout...
        t0 = time.monotonic()
        with pytest.raises(GatewayTimeout) as err:
            await client.get(mesh.service, "/slow?s=2", timeout=0.2)
        assert 0.15 < time.monotonic() - t0 < 1.5 and a.hits["slow"] == 1  # timed out: not retried
        assert isinstance(err.value.__cause__, Exception)
        # ...and at the context's deadline when that is sooner.
        ctx = ctxmod.RequestContext()
        ctx.deadline = time.monotonic() + 0.15
        token = ctxmod.bind(ctx)
        try:
            t0 = time.monotonic()
            with pytest.raises(GatewayTimeout):
                await client.get(mesh.service, "/slow?s=2", timeout=5.0)
            assert time.monotonic() - t0 < 1.5  # cut at the 0.15 s deadline, long before the 2 s answer
        finally:
            ctxmod.reset(token)


async def test_failover_when_an_instance_is_down(mesh, upstreams):
    a, b = await upstreams("a"), await upstreams("b")
    await mesh.add("a", a.port)
    await mesh.add("b", b.port)
    await mesh.add("dead", free_port())  # registered, nothing listening
    await wait_instances(mesh, 3)
    async with client_for(mesh) as client:
        results = [await client.get(mesh.service, "/echo") for _ in range(60)]
        assert all(r.status == 200 for r in results)
        assert {r.json()["instance"] for r in results} == {"a", "b"}
        # A non-idempotent call that never reached the dead one is retried too.
        posts = [await client.post(mesh.service, "/echo", json={}) for _ in range(20)]
        assert all(r.status == 200 for r in posts)
        snap = client.snapshot()[mesh.service]["instances"]
        assert snap[f"{mesh.service}.dead"]["ejected"] is True  # 5 connect failures in a row
        assert snap[f"{mesh.service}.a"]["ejected"] is False


async def test_post_not_retried_after_it_was_sent(mesh, upstreams):
    a, b = await upstreams("a"), await upstreams("b")
    a.status = b.status = 503
    await mesh.add("a", a.port)
    await mesh.add("b", b.port)
    await wait_instances(mesh, 2)
    async with client_for(mesh) as client:
        r = await client.post(mesh.service, "/echo", json={"order": 1})
        assert r.status == 503 and r.attempts == 1
        assert a.hits["POST"] + b.hits["POST"] == 1
        with pytest.raises(Unavailable):
            r.raise_for_status()


async def test_broken_connection_post_vs_get(mesh):
    dropper = await Dropper().start()
    try:
        await mesh.add("dropper", dropper.port)
        await wait_instances(mesh, 1)
        async with client_for(mesh, outlier=lambda: OutlierDetector(consecutive_failures=100)) as client:
            with pytest.raises(BadGateway) as err:
                await client.post(mesh.service, "/echo", json={"pay": 10})
            assert dropper.requests == 1  # sent once, never again: it may have been acted on
            assert err.value.__cause__ is not None and mesh.service in err.value.message
            with pytest.raises(BadGateway):
                await client.get(mesh.service, "/echo")
            assert dropper.requests == 1 + 3  # an idempotent call used all its attempts
    finally:
        await dropper.stop()


async def test_503_retried_on_another_instance(mesh, upstreams):
    a, b = await upstreams("a"), await upstreams("b")
    a.status = 503
    await mesh.add("a", a.port)
    await mesh.add("b", b.port)
    await wait_instances(mesh, 2)
    async with client_for(mesh) as client:
        results = [await client.get(mesh.service, "/echo") for _ in range(30)]
        assert all(r.status == 200 and r.json()["instance"] == "b" for r in results)
        assert a.hits["GET"] >= 1  # it was tried, and the retry went elsewhere
        assert any(r.attempts == 2 for r in results)


async def test_retry_budget_caps_retries_under_sustained_failure(mesh, upstreams):
    a = await upstreams("a")
    a.status = 503
    await mesh.add("a", a.port)
    await wait_instances(mesh, 1)
    client = client_for(
        mesh,
        max_attempts=5,
        retry_budget=lambda: RetryBudget(0.2, min_per_second=0.0, window=30.0),
        breaker=lambda: CircuitBreaker(min_calls=10_000),  # isolate the budget from the breaker
    )
    async with client:
        results = [await client.get(mesh.service, "/echo") for _ in range(100)]
    assert all(r.status == 503 for r in results)
    # Without a budget this would be 500 requests; the budget allows 20 % more than the 100 calls.
    assert 100 < a.hits["GET"] <= 120, a.hits


async def test_breaker_opens_and_recovers(mesh, upstreams):
    a = await upstreams("a")
    a.status = 500
    await mesh.add("a", a.port)
    await wait_instances(mesh, 1)
    client = client_for(
        mesh, breaker=lambda: CircuitBreaker(min_calls=5, failure_ratio=0.5, open_for=0.3),
    )
    key = f"{mesh.service}.a"
    async with client:
        for _ in range(5):
            assert (await client.get(mesh.service, "/echo")).status == 500
        assert client.snapshot()[mesh.service]["instances"][key]["breaker"]["state"] == "open"
        with pytest.raises(Unavailable, match="circuit"):
            await client.get(mesh.service, "/echo")
        assert a.hits["GET"] == 5  # the open circuit sent nothing
        a.status = None
        await asyncio.sleep(0.35)
        assert client.snapshot()[mesh.service]["instances"][key]["breaker"]["state"] == "half_open"
        r = await client.get(mesh.service, "/echo")
        assert r.status == 200
        assert client.snapshot()[mesh.service]["instances"][key]["breaker"]["state"] == "closed"


async def test_registry_changes_are_followed(mesh, upstreams):
    a, b = await upstreams("a"), await upstreams("b")
    inst_a = await mesh.add("a", a.port)
    await wait_instances(mesh, 1)
    async with client_for(mesh) as client:
        assert (await client.get(mesh.service, "/echo")).json()["instance"] == "a"
        await mesh.add("b", b.port, weight=3)
        await mesh.registry.deregister(inst_a)
        for _ in range(100):
            if [i.instance_id for i in mesh.view.instances(mesh.service)] == ["b"]:
                break
            await asyncio.sleep(0.01)
        got = {(await client.get(mesh.service, "/echo")).json()["instance"] for _ in range(10)}
        assert got == {"b"}
        assert list(client.snapshot()[mesh.service]["instances"]) == [f"{mesh.service}.b"]
