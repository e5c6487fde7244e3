"""Registration: heartbeat task, retries, re-registering a vanished entry, and
the in-process registry's sharing and expiry details."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from meshkit.basis.errors import BadRequest, ConfigError, NotFound
from meshkit.basis.instance import Instance
from meshkit.basis.registry import Registry, open_registry
from meshkit.basis.registry.memory import MemoryRegistry
from meshkit.basis.registry.registration import Registration


def inst(iid: str = "a", **kw) -> Instance:
    return Instance(service="svc", instance_id=iid, address="127.0.0.1", port=1000, **kw)


class FlakyRegistry:
    """Records calls; heartbeats fail with the given exceptions, in order."""

    def __init__(self, *heartbeat_errors: Exception) -> None:
        self.errors = list(heartbeat_errors)
        self.calls: list[tuple[str, str]] = []

    async def register(self, instance, ttl):
        self.calls.append(("register", instance.status))

    async def heartbeat(self, instance):
        self.calls.append(("heartbeat", instance.status))
        if self.errors:
            raise self.errors.pop(0)

    async def deregister(self, instance):
        self.calls.append(("deregister", instance.status))

    async def list(self, service=None):
        return []

    async def watch(self):
        yield  # pragma: no cover

    async def close(self): ...


def unique_url() -> str:
    return f"memory://reg-{uuid.uuid4().hex[:8]}"


def test_interval_must_be_shorter_than_ttl():
    with pytest.raises(ConfigError, match="shorter than the registry ttl"):
        Registration(FlakyRegistry(), inst(), ttl=1.0, interval=1.0)


async def test_failed_heartbeats_are_retried_and_a_vanished_entry_is_registered_again():
    reg = FlakyRegistry(ConnectionError("down"), ConnectionError("down"), NotFound("gone"))
    r = Registration(reg, inst(), ttl=1.0, interval=0.05)
    await r.start()
    for _ in range(100):
        if len(reg.calls) >= 6:
            break
        await asyncio.sleep(0.01)
    await r.stop()
    kinds = [c[0] for c in reg.calls]
    # register, 2 failed heartbeats, heartbeat -> NotFound -> register, then healthy heartbeats
    assert kinds[:5] == ["register", "heartbeat", "heartbeat", "heartbeat", "register"]
    assert kinds[-1] == "deregister"
    assert r.failures == 0
    assert not r.running


async def test_update_publishes_at_once_and_stop_can_keep_the_entry():
    reg = FlakyRegistry()
    r = Registration(reg, inst(), ttl=3.0, interval=1.0)
    await r.start()
    await r.update(status="draining")
    assert reg.calls == [("register", "up"), ("heartbeat", "draining")]
    await r.stop(deregister=False)
    assert reg.calls[-1] == ("heartbeat", "draining")


@pytest.mark.timing
async def test_memory_registration_heals_after_expiry():
    registry = MemoryRegistry(unique_url())
    a = inst()
    r = Registration(registry, a, ttl=0.3, interval=0.1)
    await r.start()
    await asyncio.sleep(0.35)
    assert await registry.list("svc") == [a]  # heartbeats kept it
    # Pause the heartbeats long enough to expire, then resume: it comes back.
    await r.stop(deregister=False)
    await asyncio.sleep(0.45)
    assert await registry.list("svc") == []
    await r.start()
    assert [i.instance_id for i in await registry.list("svc")] == ["a"]
    await r.stop()
    assert await registry.list() == []


async def test_shared_memory_registry_is_one_per_url_and_refcounted():
    url = unique_url()
    a = await open_registry(url)
    b = await open_registry(url)
    assert a is b and isinstance(a, MemoryRegistry) and isinstance(a, Registry)
    assert (await open_registry(unique_url())) is not a
    events = []

    async def consume():
        async for ev in a.watch():
            events.append(ev.kind)

    task = asyncio.create_task(consume())
    await asyncio.sleep(0.01)
    await a.close()  # b still uses it: the watch continues
    await b.register(inst(), 5)
    await asyncio.sleep(0.01)
    assert events == ["sync", "put"]
    await b.close()  # last share: watches end
    await asyncio.wait_for(task, 1)


async def test_memory_rejects_bad_ttl_and_heartbeat_of_unknown():
    registry = MemoryRegistry()
    with pytest.raises(BadRequest):
        await registry.register(inst(), 0)
    with pytest.raises(NotFound, match="register it again"):
        await registry.heartbeat(inst())
    await registry.deregister(inst())  # unknown: no error
