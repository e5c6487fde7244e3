"""NATS KV registry on the real server: a SIGKILLed process disappears with the
default ttl, expiry markers never pass for live entries, and registrations and
views recover when NATS restarts."""

from __future__ import annotations

import asyncio
import signal
import sys
import time
import uuid

import nats
import pytest
from nats.js.api import KeyValueConfig

from helpers.waiting import until
from meshkit.basis.errors import ConfigError, Unavailable
from meshkit.basis.instance import Instance
from meshkit.basis.natsd import EmbeddedNats, free_port
from meshkit.basis.registry import open_registry
from meshkit.basis.registry.nats_kv import NatsKVRegistry
from meshkit.basis.registry.registration import Registration
from meshkit.basis.registry.view import RegistryView

# A service process in miniature: register with the defaults, heartbeat, never stop.
CHILD = r"""
import asyncio, sys
from meshkit.basis.instance import Instance
from meshkit.basis.registry import open_registry
from meshkit.basis.registry.registration import Registration

async def main():
    registry = await open_registry(sys.argv[1])
    await Registration(registry, Instance("victim", sys.argv[2], "127.0.0.1", 7000)).start()
    print("registered", flush=True)
    await asyncio.Event().wait()

asyncio.run(main())
"""


def bucket_url(nats_url: str) -> str:
    return f"{nats_url}?bucket=t_{uuid.uuid4().hex[:10]}"


async def test_sigkilled_process_disappears_within_3s_by_default(nats_server):
    url = bucket_url(nats_server)
    registry = await open_registry(url)
    view = await RegistryView(registry).start()
    iid = f"child-{uuid.uuid4().hex[:6]}"
    key = f"victim.{iid}"
    heartbeats: list[float] = []

    async def record_puts():
        async for ev in registry.watch():
            if ev.kind == "put" and ev.key == key:
                heartbeats.append(time.monotonic())

    recorder = asyncio.create_task(record_puts())
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-c", CHILD, url, iid, stdout=asyncio.subprocess.PIPE
    )
    try:
        assert (await asyncio.wait_for(child.stdout.readline(), 20)).strip() == b"registered"
        await view.wait_for("victim", 1, timeout=1)
        assert view.instances("victim")[0].instance_id == iid
        # Kill between heartbeats (not in the instant after one), as a crash would land.
        await until(lambda: len(heartbeats) >= 2, 3.0)
        await asyncio.sleep(0.3)
        child.send_signal(signal.SIGKILL)
        killed = time.monotonic()
        await child.wait()
        gone = killed + await until(lambda: not view.instances("victim"), 5.0)
    finally:
        if child.returncode is None:
            child.kill()
            await child.wait()
    assert gone - killed < 3.0, f"took {gone - killed:.2f}s after SIGKILL"
    # ttl 3 s from the last heartbeat, plus the view's grace and a little scheduling
    assert gone - heartbeats[-1] < 3.0 + view.grace + 0.1
    assert await registry.list("victim") == []
    recorder.cancel()
    await view.close()
    await registry.close()


async def test_expiry_markers_are_never_taken_for_live_entries(nats_server):
    url = bucket_url(nats_server)
    registry = await NatsKVRegistry.connect(url)
    a = Instance("marked", "a", "127.0.0.1", 7001)
    it = registry.watch()
    assert (await anext(it)).kind == "sync"
    await registry.register(a, 1.0)
    assert (await anext(it)).kind == "put"
    expired = await asyncio.wait_for(anext(it), 3.0)
    assert (expired.kind, expired.key) == ("delete", a.key)
    # The server keeps a marker for the expired key...
    assert (await registry._kv.status()).values == 1
    # ...and nats-py's kv.get hands it back as if it were an entry: the trap this
    # backend avoids by never calling get.
    try:
        entry = await registry._kv.get(a.key)
    except Exception as exc:  # a later nats-py may report it as deleted
        assert "NotFound" in type(exc).__name__
    else:
        assert not entry.value and entry.operation is None
    assert await registry.list() == []
    assert await registry.list("marked") == []
    view = await RegistryView(registry).start()  # the snapshot holds only the marker
    assert view.instances("marked") == [] and view.all_instances() == []
    await view.close()
    await it.aclose()
    await registry.close()


async def test_each_entry_keeps_its_own_ttl_in_one_bucket(nats_server):
    registry = await NatsKVRegistry.connect(bucket_url(nats_server))
    short, long = Instance("mixed", "short", "h", 1), Instance("mixed", "long", "h", 2)
    await registry.register(short, 1.0)
    await registry.register(long, 4.0)
    await asyncio.sleep(1.6)
    assert [i.instance_id for i in await registry.list("mixed")] == ["long"]
    await registry._js.delete_key_value(registry.bucket)
    await registry.close()


async def test_a_bucket_without_expiry_markers_is_refused(nats_server):
    name = f"plain_{uuid.uuid4().hex[:8]}"
    nc = await nats.connect(nats_server)
    await nc.jetstream().create_key_value(KeyValueConfig(bucket=name))
    with pytest.raises(ConfigError, match="expiry markers"):
        await NatsKVRegistry.connect(f"{nats_server}?bucket={name}")
    await nc.jetstream().delete_key_value(name)
    await nc.close()


async def test_unreachable_nats_fails_fast_with_advice():
    t0 = time.monotonic()
    with pytest.raises(Unavailable, match="MESHKIT_NATS_URL"):
        await open_registry(f"nats://127.0.0.1:{free_port()}")
    assert time.monotonic() - t0 < 3


async def test_registrations_and_views_recover_after_nats_restarts(tmp_path):
    server = EmbeddedNats(port=free_port(), data_dir=tmp_path, log_file=tmp_path / "nats.log")
    await server.start()
    writer = await open_registry(server.url)
    reader = await open_registry(server.url)
    view = await RegistryView(reader, backoff_max=0.5).start()
    stay = Registration(writer, Instance("svc", "stay", "127.0.0.1", 7100), ttl=2.0, interval=0.5)
    ghost = Registration(writer, Instance("svc", "ghost", "127.0.0.1", 7101), ttl=2.0, interval=0.5)
    await stay.start()
    await ghost.start()
    await view.wait_for("svc", 2, timeout=1)
    try:
        await server.stop()
        await ghost.stop(deregister=False)  # dies while NATS is down
        await until(lambda: stay.failures > 0, 4.0, step=0.02)  # a heartbeat timed out
        # An outage of the registry is not an outage of the services: the view keeps
        # them, though more than a ttl passed without heartbeats.
        assert {i.instance_id for i in view.instances("svc")} == {"stay", "ghost"}
        await server.start()
        t_restart = time.monotonic()
        # The view watches again and the heartbeats get through again.
        await until(lambda: view.watches >= 2, 5.0, step=0.02)
        await until(lambda: stay.failures == 0 and stay.last_ok > t_restart, 5.0, step=0.02)
        # The instance that died during the outage goes; the live one stays.
        await until(lambda: [i.instance_id for i in view.instances("svc")] == ["stay"], 4.0, step=0.02)
        assert [i.instance_id for i in await writer.list("svc")] == ["stay"]
        # New registrations and deregistrations flow as before.
        late = Registration(writer, Instance("svc", "late", "127.0.0.1", 7102), ttl=2.0, interval=0.5)
        t0 = time.monotonic()
        await late.start()
        await until(lambda: len(view.instances("svc")) == 2, 1.0)
        assert time.monotonic() - t0 < 0.2
        await late.stop()
        await until(lambda: len(view.instances("svc")) == 1, 1.0)
    finally:
        await stay.stop()
        await view.close()
        await writer.close()
        await reader.close()
        await server.stop()


async def test_list_right_after_puts_sees_every_entry_and_leaves_no_consumer(nats_server):
    # nats-py's KV watch can mark its snapshot complete while the entries are still in
    # flight (nats-io/nats.py#842); a list() built on it came back empty in one CI run.
    # The race is rare on an idle machine: these rounds guard against it, they do not
    # reproduce it on demand. A watch-based list also left a consumer behind per call.
    registry = await open_registry(bucket_url(nats_server))
    try:
        for round_ in range(40):
            made = [Instance("race", f"r{round_}-{n}", "127.0.0.1", 9000 + n) for n in range(3)]
            for inst in made:
                await registry.register(inst, 30)
            assert {i.key for i in await registry.list("race")} >= {i.key for i in made}, round_
        assert len(await registry.list()) == 120
        assert await registry.list("nobody") == []
        info = await registry._js.stream_info(f"KV_{registry.bucket}")
        assert info.state.consumer_count == 0  # each snapshot's consumer is deleted after it
    finally:
        await registry._js.delete_key_value(registry.bucket)
        await registry.close()
