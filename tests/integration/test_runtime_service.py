"""A real Service on the real NATS registry: registers on start (with either embedded
server), /readyz reflects its checks, deregisters on stop, calls another service by
name with the request context carried, and cleans up after a failed start."""

from __future__ import annotations

import asyncio
import uuid

import httpx
import pytest
from starlette.requests import Request
from starlette.routing import Route

from meshkit.basis import context
from meshkit.basis.client import ServiceClient
from meshkit.basis.errors import ConfigError
from meshkit.basis.registry import open_registry
from meshkit.basis.registry.view import RegistryView
from meshkit.basis.service import Service
from meshkit.basis.settings import ServiceSettings
from meshkit.basis.testing import running
from meshkit.basis.web import json_response


def settings(registry_url: str, name: str, **kw) -> ServiceSettings:
    return ServiceSettings(name=name, instance_id=f"{name}-{uuid.uuid4().hex[:6]}", registry_url=registry_url,
                           drain_timeout=2.0, **kw)


@pytest.fixture
async def registry_url(nats_server):
    # A bucket of its own per test: no instance of another test is ever seen.
    return f"{nats_server}?bucket=rt_{uuid.uuid4().hex[:10]}"


@pytest.fixture
async def watcher(registry_url):
    registry = await open_registry(registry_url)
    view = RegistryView(registry)
    await view.start()
    yield view
    await view.close()
    await registry.close()


async def gone(view: RegistryView, name: str, timeout: float) -> float:
    loop = asyncio.get_running_loop()
    start = loop.time()
    while view.instances(name):
        assert loop.time() - start < timeout, f"{name} still registered after {timeout}s"
        await asyncio.sleep(0.01)
    return loop.time() - start


@pytest.mark.parametrize("server", ["granian", "uvicorn"])
async def test_registers_on_start_ready_then_deregisters(server, registry_url, watcher):
    name = f"rt-{server}"
    svc = Service(settings(registry_url, name, http_server=server, metadata={"zone": "a"}), version="1.2.3")
    order: list[str] = []

    async def hook_up(service):
        order.append(f"startup registered={service.registered} client={type(service.client).__name__}")

    async def hook_down(service):
        order.append(f"shutdown draining={service.draining}")

    svc.on_startup(hook_up)
    svc.on_shutdown(hook_down)
    async with running(svc):
        assert isinstance(svc.client, ServiceClient) and svc.view is not None
        [seen] = await watcher.wait_for(name, 1, timeout=5.0)
        assert (seen.port, seen.version, seen.metadata, seen.instance_id) == (
            svc.port, "1.2.3", {"zone": "a"}, svc.settings.instance_id)
        assert svc.port > 0 and seen.started_at == svc.instance.started_at
        async with httpx.AsyncClient(base_url=svc.url) as c:
            ready = await c.get("/readyz")
            assert ready.status_code == 200, ready.text
            assert ready.json()["checks"]["registry"]["ok"] is True
            broken = {"db": False}

            async def database():
                if not broken["db"]:
                    raise ConnectionRefusedError("connection to 127.0.0.1:5432 refused")

            svc.add_check("database", database)
            failing = await c.get("/readyz")
            assert failing.status_code == 503
            assert failing.json()["error"]["details"]["failed"] == ["database"]
            broken["db"] = True
            assert (await c.get("/readyz")).status_code == 200
    # Deregistered on stop, not left to expire (ttl is longer than this).
    assert await gone(watcher, name, timeout=svc.settings.registry_ttl * 0.8) >= 0
    assert order == ["startup registered=False client=ServiceClient", "shutdown draining=True"]
    assert svc.client is None and svc.registry is None


async def test_calls_another_service_by_name_with_context_carried(registry_url):
    async def whoami(request: Request):
        ctx = context.current()
        return json_response({"caller": request.headers.get("x-meshkit-caller"), "request_id": ctx.request_id,
                              "trace_id": ctx.trace_id, "subject": ctx.identity.subject if ctx.identity else None})

    async def relay(request: Request):
        r = await request.app.client.get("rt-backend", "/whoami")
        return json_response(r.json())

    backend = Service(settings(registry_url, "rt-backend"), routes=[Route("/whoami", whoami)])
    front = Service(settings(registry_url, "rt-front"), routes=[Route("/relay", relay)])
    trace = uuid.uuid4().hex
    async with running(backend), running(front):
        await front.view.wait_for("rt-backend", 1, timeout=5.0)
        async with httpx.AsyncClient(base_url=front.url) as c:
            r = await c.get("/relay", headers={"x-request-id": "relay-1", "traceparent": f"00-{trace}-{'2' * 16}-01",
                                               "x-meshkit-subject": "u-7"})
    assert r.status_code == 200, r.text
    assert r.json() == {"caller": "rt-front", "request_id": "relay-1", "trace_id": trace, "subject": "u-7"}


async def test_failed_start_cleans_up(registry_url, watcher):
    svc = Service(settings(registry_url, "rt-broken"))

    async def explode(service):
        raise RuntimeError("migration 0003 failed")

    svc.on_startup(explode)
    with pytest.raises(RuntimeError, match="migration 0003"):
        await svc.start()
    assert svc.registry is None and svc.view is None and not svc.registered
    assert watcher.instances("rt-broken") == []

    # A port in use is a clear configuration error, and nothing stays registered.
    async with running(Service(settings(registry_url, "rt-holder"))) as holder:
        clash = Service(settings(registry_url, "rt-clash", port=holder.port))
        with pytest.raises(ConfigError, match="choose another port"):
            await clash.start()
        # running() always takes a free port, whatever the settings say.
        async with running(clash) as ok:
            assert ok.port not in (0, holder.port)
            await watcher.wait_for("rt-clash", 1, timeout=5.0)
    await gone(watcher, "rt-clash", timeout=2.0)
