"""``meshkit dlq list|show|replay`` against a real NATS."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from typing import ClassVar

from meshkit.basis.bus import Bus, Envelope, Event, RetryPolicy


class Broken(Event):
    type_name: ClassVar[str] = "clitest.thing.broken"
    n: int


async def meshkit(nats_url: str, *args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "meshkit.cli.main", "dlq", *args,
        env={**os.environ, "MESHKIT_NATS_URL": nats_url},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    return proc.returncode, out.decode(), err.decode()


async def test_list_show_replay(nats_server):
    tag = os.urandom(3).hex()
    bus = Bus(nats_server, source="clitest")
    fixed = asyncio.Event()
    broken = True

    @bus.handler(f"clitest.{tag}", durable=f"cli-{tag}", retry=RetryPolicy(max_deliveries=2, initial=0.02))
    async def handle(event: Envelope):
        if broken:
            raise LookupError("no such thing")
        fixed.set()

    await bus.start()
    try:
        await bus.publish(Broken(n=3), subject=f"clitest.{tag}", id=f"broken-{tag}")
        for _ in range(200):
            if bus.consumers[0].dead:
                break
            await asyncio.sleep(0.02)
        code, out, _ = await meshkit(nats_server, "list", "--consumer", f"cli-{tag}", "--json")
        assert code == 0
        letters = json.loads(out)
        assert len(letters) == 1 and letters[0]["event"]["id"] == f"broken-{tag}" and letters[0]["deliveries"] == 2
        seq = letters[0]["seq"]
        code, out, _ = await meshkit(nats_server, "list", "--consumer", f"cli-{tag}")
        assert code == 0 and "clitest.thing.broken" in out and "LookupError" in out
        code, out, _ = await meshkit(nats_server, "show", str(seq))
        assert code == 0 and json.loads(out)["error"].startswith("LookupError")
        broken = False
        code, out, _ = await meshkit(nats_server, "replay", str(seq))
        assert code == 0 and f"broken-{tag}" in out
        await asyncio.wait_for(fixed.wait(), 10)
        code, _, err = await meshkit(nats_server, "show", str(seq))
        assert code == 1 and "meshkit dlq list" in err
    finally:
        await bus.close()
