"""The fault test: N events through the outbox while NATS is stopped and restarted, the relay (its own
process) is SIGKILLed and restarted, and the consumer is made to redeliver on purpose — afterwards
exactly N effects, none lost, none twice. On SQLite and PostgreSQL. (A bigger N: tests/chaos.)"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
from pathlib import Path
from typing import ClassVar

import pytest
from sqlalchemy import Column, Integer, MetaData, String, Table, func, insert, select

from meshkit.basis.bus import Bus, Envelope, Event, Retry, RetryPolicy
from meshkit.basis.inbox import Inbox
from meshkit.basis.natsd import EmbeddedNats, free_port
from meshkit.basis.outbox import Outbox, tables_for
from meshkit.basis.outbox.testing import create_tables
from meshkit.basis.storage import create_engine, session_factory, transaction


class Tick(Event):
    type_name: ClassVar[str] = "faults.tick.happened"
    n: int


@pytest.fixture(params=["sqlite", "postgresql"])
def fault_db(request, tmp_path):
    if request.param == "postgresql":
        return request.getfixturevalue("postgres_url")
    return f"sqlite+aiosqlite:///{tmp_path / 'faults.db'}"


def start_relay(db_url: str, nats_url: str, prefix: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "meshkit.basis.outbox", "--database", db_url, "--nats", nats_url, "--prefix", prefix,
         "--holder", "relay", "--batch", "25", "--lease-ttl", "2", "--poll", "0.05"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )


async def run_fault_scenario(db_url: str, data_dir: Path, n: int) -> None:
    """Produce ``n`` events under faults; assert exactly ``n`` effects."""
    rng = random.Random(n)
    prefix = f"f{os.urandom(3).hex()}"
    md = MetaData()
    effects = Table(f"{prefix}_effects", md,
                    Column("id", Integer, primary_key=True, autoincrement=True),
                    Column("event_id", String(64), nullable=False),
                    Column("n", Integer, nullable=False))
    engine = create_engine(db_url)
    await create_tables(engine, prefix, extra=md)
    sessions = session_factory(engine)
    port = free_port()
    server = await EmbeddedNats(port=port, data_dir=data_dir).start()
    url = server.url
    outbox = Outbox(prefix, source="faults")
    consumer = Bus(url, source="faults")
    inbox = Inbox(sessions, prefix=prefix, consumer="effects")
    subject = f"faults.{prefix}.tick"
    forced = 0

    @inbox.handler
    async def apply(event: Envelope, session):
        if rng.random() < 0.05:
            raise RuntimeError("handler failed before its effect")  # rolled back, retried
        await session.execute(insert(effects).values(event_id=event.id, n=event.data.n))

    async def handle(event: Envelope):
        nonlocal forced
        outcome = await apply(event)
        if outcome is None and event.delivery == 1 and rng.random() < 0.2:
            forced += 1
            return Retry(0.01)  # the effect is committed, but the message comes again
        return outcome

    consumer.subscribe(subject, handle, durable=f"{prefix}-effects", concurrency=4,
                       retry=RetryPolicy(max_deliveries=100, initial=0.02, maximum=0.2))
    await consumer.start()
    relay = start_relay(db_url, url, prefix)

    async def produce(lo: int, hi: int) -> None:
        for i in range(lo, hi):
            async with transaction(sessions) as s:
                await outbox.add(s, Tick(n=i), aggregate_id=f"a{i % 7}", subject=subject)
            if i % 10 == 0:
                await asyncio.sleep(0)

    async def count_effects() -> tuple[int, int]:
        async with transaction(sessions, write=False) as s:
            total = (await s.execute(select(func.count()).select_from(effects))).scalar_one()
            distinct = (await s.execute(select(func.count(effects.c.event_id.distinct())))).scalar_one()
        return int(total), int(distinct)

    third = n // 3
    try:
        await produce(0, third)
        await asyncio.sleep(0.3)
        relay.send_signal(signal.SIGKILL)  # mid-stream: some published, not all marked
        relay.wait()
        await produce(third, 2 * third)
        relay = start_relay(db_url, url, prefix)
        await asyncio.sleep(0.3)
        await server.stop()  # NATS down: writes go on
        await produce(2 * third, n)
        relay.send_signal(signal.SIGKILL)
        relay.wait()
        relay = start_relay(db_url, url, prefix)  # starts while NATS is down
        await asyncio.sleep(0.5)
        server = await EmbeddedNats(port=port, data_dir=data_dir).start()
        await asyncio.sleep(0.4)
        relay.send_signal(signal.SIGKILL)  # again, while it drains the backlog
        relay.wait()
        relay = start_relay(db_url, url, prefix)
        ob = tables_for(prefix).outbox
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 60
        while True:
            total, _ = await count_effects()
            async with transaction(sessions, write=False) as s:
                pending = (await s.execute(select(func.count()).select_from(ob).where(ob.c.sent_at.is_(None)))).scalar_one()
            if total >= n and pending == 0:
                break
            assert loop.time() < deadline, f"only {total}/{n} effects, {pending} unsent after 60 s"
            await asyncio.sleep(0.1)
        await asyncio.sleep(0.5)  # late duplicates would land now
        total, distinct = await count_effects()
        assert (total, distinct) == (n, n)
        assert forced > 0 and inbox.skipped >= forced  # redeliveries happened and were absorbed
        async with transaction(sessions, write=False) as s:
            numbers = sorted(r[0] for r in (await s.execute(select(effects.c.n))).all())
        assert numbers == list(range(n))
    finally:
        if relay.poll() is None:
            relay.send_signal(signal.SIGTERM)
            try:
                relay.wait(5)
            except subprocess.TimeoutExpired:
                relay.kill()
        await consumer.close()
        await server.stop()
        await engine.dispose()


async def test_exactly_n_effects_under_faults(fault_db, tmp_path):
    await run_fault_scenario(fault_db, tmp_path / "nats", n=300)
