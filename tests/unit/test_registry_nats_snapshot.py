"""NatsKVRegistry.watch() and nats-py's early "snapshot delivered" marker (nats-io/nats.py#842).

nats-py's KV watcher can put its ``None`` marker in the queue before snapshot entries
that were already in flight. The race is rare against a real server, so these tests
script the watcher's queue: the order of events the registry yields is what counts.
"""

from __future__ import annotations

import asyncio

import nats.errors
import orjson
from nats.js.kv import KeyValue

from meshkit.basis.instance import Instance
from meshkit.basis.registry.nats_kv import NatsKVRegistry


class ScriptedWatcher:
    """What nats-py's KeyWatcher offers the registry: ``updates``, iteration, ``stop``."""

    def __init__(self, script: list) -> None:
        self._updates: asyncio.Queue = asyncio.Queue()
        for item in script:
            self._updates.put_nowait(item)

    async def updates(self, timeout: float):
        try:
            return await asyncio.wait_for(self._updates.get(), timeout)
        except TimeoutError:
            raise nats.errors.TimeoutError from None

    def __aiter__(self):
        return self

    async def __anext__(self):
        item = await self._updates.get()
        if item is KeyValue.KeyWatcher.STOP_ITER:
            raise StopAsyncIteration
        return item

    async def stop(self) -> None:
        self._updates.put_nowait(KeyValue.KeyWatcher.STOP_ITER)


class Bucket:
    def __init__(self, watcher: ScriptedWatcher) -> None:
        self.watcher = watcher

    async def watch(self, keys: str, inactive_threshold: float) -> ScriptedWatcher:
        return self.watcher


class Connection:
    def jetstream(self, timeout: float) -> None:
        return None

    async def close(self) -> None:
        pass


def entry(iid: str, left: int) -> KeyValue.Entry:
    inst = Instance("svc", iid, "127.0.0.1", 9000)
    value = orjson.dumps({**orjson.loads(inst.to_json()), "ttl": 5})
    return KeyValue.Entry(bucket="b", key=inst.key, value=value, revision=1, delta=left, created=None,
                          operation=None)


async def first_events(script: list, n: int) -> list[str]:
    watcher = ScriptedWatcher(script)
    registry = NatsKVRegistry(Connection(), Bucket(watcher), "b", timeout=2.0, marker_ttl=1.0)
    seen: list[str] = []
    watch = registry.watch()
    async for event in watch:
        seen.append(f"{event.kind}:{event.key}" if event.key else event.kind)
        if len(seen) == n:
            break
    await watch.aclose()
    await registry.close()
    return seen


async def test_an_early_marker_waits_for_the_entries_in_flight():
    seen = await first_events([None, entry("a", 1), entry("b", 0)], 3)
    assert seen == ["put:svc.a", "put:svc.b", "sync"]


async def test_a_marker_after_the_last_entry_is_believed_at_once():
    # c is a change after the snapshot: had the watch waited to settle, c would come before sync
    seen = await first_events([entry("a", 1), entry("b", 0), None, entry("c", 0)], 3)
    assert seen == ["put:svc.a", "put:svc.b", "sync"]


async def test_an_empty_bucket_syncs_after_a_quiet_moment():
    seen = await first_events([None], 1)
    assert seen == ["sync"]
