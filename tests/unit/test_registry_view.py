"""RegistryView against a scripted registry: reconciling after a lost watch,
local expiry (and its pause while the watch is down), callbacks, wait_for."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest

from meshkit.basis.errors import Unavailable
from meshkit.basis.instance import Instance
from meshkit.basis.registry import RegistryEvent
from meshkit.basis.registry.memory import MemoryRegistry
from meshkit.basis.registry.view import RegistryView


def inst(service: str, iid: str, **kw) -> Instance:
    return Instance(service=service, instance_id=iid, address="127.0.0.1", port=1000, **kw)


class ScriptedRegistry:
    """A registry whose watches replay scripts: each script is a list of events,
    optionally ending with an exception (the watch fails) or ``"hold"`` (stays open)."""

    def __init__(self, *scripts: list) -> None:
        self.scripts = list(scripts)
        self.watch_calls = 0
        self.release = asyncio.Event()

    async def watch(self):
        self.watch_calls += 1
        script = self.scripts.pop(0) if self.scripts else ["hold"]
        for item in script:
            if isinstance(item, BaseException):
                raise item
            if item == "hold":
                await self.release.wait()
                return
            if isinstance(item, float):
                await asyncio.sleep(item)
                continue
            yield item

    async def register(self, instance, ttl): ...
    async def heartbeat(self, instance): ...
    async def deregister(self, instance): ...
    async def list(self, service=None):
        raise AssertionError("the view must not call list()")
    async def close(self): ...


def put(i: Instance, ttl: float = 30.0) -> RegistryEvent:
    return RegistryEvent("put", i.key, i, ttl)


SYNC = RegistryEvent("sync", "")


async def test_reconciles_after_the_watch_fails():
    a, b, c = inst("svc", "a"), inst("svc", "b"), inst("svc", "c")
    reg = ScriptedRegistry(
        [put(a), put(b), SYNC, 0.05, ConnectionError("lost")],
        # after the outage: b is gone (its delete was missed), c is new
        [put(a), put(c), SYNC, "hold"],
    )
    view = RegistryView(reg, backoff_min=0.01)
    await view.start(timeout=2)
    assert {i.instance_id for i in view.instances("svc")} == {"a", "b"}
    deadline = time.monotonic() + 2
    while view.watches < 2 and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    assert view.watches == 2
    assert {i.instance_id for i in view.instances("svc")} == {"a", "c"}
    await view.close()


@pytest.mark.timing
async def test_local_expiry_drops_an_entry_whose_delete_never_comes():
    a = inst("svc", "a")
    reg = ScriptedRegistry([put(a, ttl=0.3), SYNC, "hold"])
    view = RegistryView(reg, grace=0.05)
    await view.start(timeout=2)
    assert view.instances("svc") == [a]
    t0 = time.monotonic()
    while view.instances("svc") and time.monotonic() - t0 < 2:
        await asyncio.sleep(0.01)
    took = time.monotonic() - t0
    assert view.instances("svc") == []
    assert 0.3 <= took < 0.6
    await view.close()


@pytest.mark.timing
async def test_local_expiry_pauses_while_the_watch_is_down():
    a = inst("svc", "a")
    # The watch fails right after sync and stays down for a while (every retry fails).
    failing = [[ConnectionError("down")] for _ in range(50)]
    reg = ScriptedRegistry([put(a, ttl=0.2), SYNC, 0.01, ConnectionError("down")], *failing)
    view = RegistryView(reg, grace=0.0, backoff_min=0.02, backoff_max=0.05)
    await view.start(timeout=2)
    await asyncio.sleep(0.6)  # three ttls with no heartbeat, but no watch either
    assert view.instances("svc") == [a], "an outage of the registry must not empty the view"
    assert reg.watch_calls > 2
    await view.close()


async def test_callbacks_fire_on_change_not_on_heartbeat():
    a = inst("svc", "a")
    reg = ScriptedRegistry(
        [
            put(a),
            SYNC,
            put(a),  # heartbeat: same instance
            put(inst("svc", "a", status="draining")),
            RegistryEvent("delete", a.key),
            "hold",
        ]
    )
    view = RegistryView(reg)
    seen: list[str] = []
    unsubscribe = view.subscribe(seen.append)
    await view.start(timeout=2)
    await asyncio.sleep(0.05)
    assert seen == ["svc", "svc", "svc"]  # added, became draining, deleted
    unsubscribe()
    await view.close()


async def test_draining_instances_are_not_offered_but_are_known():
    up, draining = inst("svc", "a"), inst("svc", "b", status="draining")
    reg = ScriptedRegistry([put(up), put(draining), SYNC, "hold"])
    view = await RegistryView(reg).start(timeout=2)
    assert view.instances("svc") == [up]
    assert {i.instance_id for i in view.all_instances()} == {"a", "b"}
    assert view.services() == {"svc": [up]}
    await view.close()


async def test_instances_is_a_cached_lookup():
    url = f"memory://view-{uuid.uuid4().hex[:8]}"
    reg = MemoryRegistry.shared(url)
    a = inst("svc", "a")
    await reg.register(a, 30)
    view = await RegistryView(reg).start(timeout=2)
    first = view.instances("svc")
    assert view.instances("svc") is first  # built once per change, not per call
    await reg.heartbeat(a)
    await asyncio.sleep(0.01)
    assert view.instances("svc") is first  # a heartbeat changes nothing
    t0 = time.perf_counter()
    for _ in range(100_000):
        view.instances("svc")
    assert time.perf_counter() - t0 < 0.2
    assert view.instances("missing") == []
    await view.close()
    await reg.close()


async def test_wait_for_returns_when_enough_and_times_out_clearly():
    url = f"memory://view-{uuid.uuid4().hex[:8]}"
    reg = MemoryRegistry.shared(url)
    view = await RegistryView(reg).start(timeout=2)

    async def later():
        await asyncio.sleep(0.05)
        await reg.register(inst("svc", "a"), 30)
        await reg.register(inst("svc", "b"), 30)

    task = asyncio.create_task(later())
    got = await view.wait_for("svc", 2, timeout=2)
    assert {i.instance_id for i in got} == {"a", "b"}
    await task
    with pytest.raises(Unavailable) as err:
        await view.wait_for("svc", 3, timeout=0.1)
    assert err.value.reason == "registry.wait_timeout"
    assert "wanted 3" in err.value.message
    await view.close()
    await reg.close()


async def test_start_times_out_when_the_registry_never_answers():
    reg = ScriptedRegistry(*[[ConnectionError("refused")] for _ in range(100)])
    view = RegistryView(reg, backoff_min=0.01, backoff_max=0.02)
    with pytest.raises(Unavailable) as err:
        await view.start(timeout=0.2)
    assert "did not sync" in err.value.message
    await view.close()
