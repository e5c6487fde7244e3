"""One test suite for the Registry Protocol, run against every backend:
in memory and NATS KV on the real server (a bucket of its own per test)."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest

from helpers.waiting import until
from meshkit.basis.instance import Instance
from meshkit.basis.registry import Registry, RegistryEvent, open_registry
from meshkit.basis.registry.registration import Registration
from meshkit.basis.registry.view import RegistryView

BACKENDS = ["memory", "nats"]


def inst(service: str, iid: str, port: int = 8000, **kw) -> Instance:
    return Instance(service=service, instance_id=iid, address="127.0.0.1", port=port, **kw)


@pytest.fixture(params=BACKENDS)
async def open_client(request, nats_server):
    """Opens clients of one fresh registry (several clients see the same data)."""
    tag = uuid.uuid4().hex[:10]
    url = f"memory://suite-{tag}" if request.param == "memory" else f"{nats_server}?bucket=t_{tag}"
    opened: list[Registry] = []

    async def open_() -> Registry:
        reg = await open_registry(url)
        opened.append(reg)
        return reg

    yield open_
    if request.param == "nats" and opened:
        cleaner = await open_registry(url)
        await cleaner._js.delete_key_value(cleaner.bucket)
        opened.append(cleaner)
    for reg in opened:
        await reg.close()


async def next_event(it, timeout: float = 3.0) -> RegistryEvent:
    return await asyncio.wait_for(it.__anext__(), timeout)


async def test_register_list_deregister(open_client):
    reg = await open_client()
    assert isinstance(reg, Registry)
    a, b, c = inst("orders", "a"), inst("orders", "b", 8001), inst("users", "c", 8002)
    for i in (a, b, c):
        await reg.register(i, 10)
    assert {i.key for i in await reg.list()} == {a.key, b.key, c.key}
    assert sorted(i.instance_id for i in await reg.list("orders")) == ["a", "b"]
    got = {i.instance_id: i for i in await reg.list("orders")}
    assert got["b"] == b  # every field survives the round trip
    # another client of the same registry sees the same
    other = await open_client()
    assert [i.instance_id for i in await other.list("users")] == ["c"]
    await reg.deregister(a)
    assert [i.instance_id for i in await other.list("orders")] == ["b"]
    assert await reg.list("nobody") == []


async def test_watch_sees_snapshot_then_put_and_delete(open_client):
    reg = await open_client()
    a, b = inst("svc", "a"), inst("svc", "b", 8001)
    await reg.register(a, 10)
    watcher = await open_client()
    it = watcher.watch()
    first = await next_event(it)
    assert (first.kind, first.key, first.instance, first.ttl) == ("put", a.key, a, 10)
    assert (await next_event(it)).kind == "sync"
    await reg.register(b, 10)
    ev = await next_event(it)
    assert (ev.kind, ev.key, ev.instance) == ("put", b.key, b)
    await reg.deregister(a)
    ev = await next_event(it)
    assert (ev.kind, ev.key, ev.instance) == ("delete", a.key, None)
    await it.aclose()


async def test_watch_of_an_empty_registry_syncs_at_once(open_client):
    reg = await open_client()
    it = reg.watch()
    assert (await next_event(it, 2.0)).kind == "sync"
    await it.aclose()


@pytest.mark.timing
async def test_heartbeats_keep_an_entry_alive(open_client):
    reg = await open_client()
    a = inst("svc", "a")
    await reg.register(a, 1.0)
    for _ in range(6):  # 1.8 s: well past the ttl
        await asyncio.sleep(0.3)
        await reg.heartbeat(a)
    assert [i.instance_id for i in await reg.list("svc")] == ["a"]
    # a heartbeat also publishes changed fields
    await reg.heartbeat(inst("svc", "a", status="draining", started_at=a.started_at))
    assert [i.status for i in await reg.list("svc")] == ["draining"]


@pytest.mark.timing
async def test_missing_heartbeats_expire_with_a_delete_event(open_client):
    reg = await open_client()
    watcher = await open_client()
    it = watcher.watch()
    assert (await next_event(it)).kind == "sync"
    a = inst("svc", "a")
    t0 = time.monotonic()
    await reg.register(a, 1.0)
    assert (await next_event(it)).kind == "put"
    ev = await next_event(it, 3.0)
    took = time.monotonic() - t0
    assert (ev.kind, ev.key) == ("delete", a.key)
    assert 0.9 <= took < 2.0, took  # ttl + 1 s at most
    assert await reg.list() == []
    await it.aclose()


async def test_view_resolves_without_io(open_client):
    reg = await open_client()
    a = inst("svc", "a")
    await reg.register(a, 10)
    view = await RegistryView(await open_client()).start()
    assert view.instances("svc") == [a]
    assert view.services() == {"svc": [a]}
    cached = view.instances("svc")
    for _ in range(3):  # the same list object each time: a lookup in the view's copy, not a fetch
        assert view.instances("svc") is cached
    await view.close()


@pytest.mark.timing
async def test_view_sees_a_new_instance_within_200ms(open_client):
    writer = await open_client()
    view = await RegistryView(await open_client()).start()
    latencies = []
    for n in range(5):
        i = inst("fresh", f"i{n}", 9000 + n)
        t0 = time.monotonic()
        await writer.register(i, 10)
        await until(lambda i=i: i in view.instances("fresh"), 1.0)
        latencies.append(time.monotonic() - t0)
    assert max(latencies) < 0.2, latencies
    await view.close()


@pytest.mark.timing
async def test_view_drops_a_crashed_instance_within_ttl_plus_1s(open_client):
    reg = await open_client()
    view = await RegistryView(await open_client()).start()
    r = Registration(reg, inst("crashy", "a"), ttl=1.0, interval=0.3)
    await r.start()
    await view.wait_for("crashy", 1, timeout=1)
    await asyncio.sleep(0.5)
    await r.stop(deregister=False)  # heartbeats stop, as in a crash
    took = await until(lambda: not view.instances("crashy"), 3.0)
    assert took < 1.0 + 1.0, took
    await view.close()


@pytest.mark.timing
async def test_registration_lifecycle_in_a_view(open_client):
    view = await RegistryView(await open_client()).start()
    changes: list[str] = []
    view.subscribe(changes.append)
    r = Registration(await open_client(), inst("life", "a"), ttl=1.0, interval=0.2)
    await r.start()
    await view.wait_for("life", 1, timeout=1)
    await asyncio.sleep(0.7)  # several heartbeats: no change events for them
    assert changes == ["life"]
    await r.update(status="draining")
    await until(lambda: not view.instances("life"), 1.0)  # draining: not offered
    assert [i.status for i in view.all_instances()] == ["draining"]
    t0 = time.monotonic()
    await r.stop()
    await until(lambda: not view.all_instances(), 1.0)
    assert time.monotonic() - t0 < 0.2
    await view.close()
