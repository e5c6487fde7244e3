"""Events end to end: raw nats-py JetStream vs meshkit's outbox → relay → consumer with inbox.

- raw: ``js.publish`` (awaiting each ack) from a producer task, a durable pull
  consumer fetching batches and acking each message.
- meshkit: two services, each with its own database (SQLite: two files;
  PostgreSQL: a schema each) and its own NATS connection. The producer commits
  one event per database transaction through ``Outbox.add``; its relay (woken
  on commit) publishes with dedup ids and marks rows sent; the consumer's bus
  handler is wrapped in ``Inbox.handler``, which applies each fetched batch in
  one transaction (effect rows + inbox ids), then acks.

Latency is from the producer taking the event (before publish / before the
transaction) to the consumer having applied it (ack sent / inbox committed).
Run: ``python -m bench.events [N]`` (default 2000 events per case; < 60 s).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import sys
import tempfile
import time
from pathlib import Path
from typing import ClassVar

PG_DSN = os.environ.get("MESHKIT_BENCH_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres")


def _pg_up() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 5432), timeout=0.5):
            return True
    except OSError:
        return False


async def _raw(url: str, n: int) -> tuple[float, list[float]]:
    import nats
    import orjson

    nc = await nats.connect(url)
    js = nc.jetstream()
    await js.add_stream(name="BENCHRAW", subjects=["benchraw.>"])
    sub = await js.pull_subscribe("benchraw.e", durable="raw", stream="BENCHRAW")
    lat: list[float] = []
    done = asyncio.Event()

    async def consume() -> None:
        while len(lat) < n:
            try:
                msgs = await sub.fetch(256, timeout=1.0)
            except Exception:
                continue
            for m in msgs:
                sent = orjson.loads(m.data)["t"]
                await m.ack()
                lat.append(time.perf_counter() - sent)
        done.set()

    task = asyncio.create_task(consume())
    start = time.perf_counter()
    for i in range(n):
        await js.publish("benchraw.e", orjson.dumps({"i": i, "t": time.perf_counter()}), headers={"Nats-Msg-Id": f"r{i}"})
    await asyncio.wait_for(done.wait(), 60)
    elapsed = time.perf_counter() - start
    await task
    await nc.close()
    return elapsed, lat


async def _meshkit(url: str, producer_db: str, consumer_db: str, n: int) -> tuple[float, list[float]]:
    from sqlalchemy import Column, Integer, MetaData, String, Table, insert

    from meshkit.basis.bus import Bus, Envelope, Event
    from meshkit.basis.inbox import Inbox
    from meshkit.basis.outbox import Outbox, Relay
    from meshkit.basis.outbox.testing import create_tables
    from meshkit.basis.storage import session_factory, transaction
    from meshkit.basis.storage.testing import scratch_engine

    class Timed(Event):
        type_name: ClassVar[str] = "benchmk.event.timed"
        i: int
        t: float

    md = MetaData()
    effects = Table("bench_effects", md, Column("id", Integer, primary_key=True), Column("event_id", String(64)))
    # Two services, as in production: the producer (its database, its outbox, its relay
    # on its own NATS connection) and the consumer (its own database with the inbox).
    async with scratch_engine(producer_db) as p_engine, scratch_engine(consumer_db) as c_engine:
        await create_tables(p_engine, "benchp")
        await create_tables(c_engine, "benchc", extra=md)
        p_sessions, c_sessions = session_factory(p_engine), session_factory(c_engine)
        outbox = Outbox("benchp", source="benchp")
        p_bus, c_bus = Bus(url, source="benchp"), Bus(url, source="benchc")
        relay = Relay(outbox, p_sessions, p_bus, holder="bench", poll=0.05)
        inbox = Inbox(c_sessions, prefix="benchc", consumer="bench")
        lat: list[float] = []
        done = asyncio.Event()

        @inbox.handler
        async def apply(event: Envelope, session) -> None:
            await session.execute(insert(effects).values(event_id=event.id))

        def committed(events) -> None:  # after the inbox transaction committed
            now = time.perf_counter()
            lat.extend(now - e.data.t for e in events)
            if len(lat) >= n:
                done.set()

        inbox.on_commit(committed)
        c_bus.subscribe("benchmk.event.timed", apply, durable="bench", batch=256)
        await p_bus.connect()
        await c_bus.start()
        await relay.start()
        start = time.perf_counter()
        for i in range(n):
            async with transaction(p_sessions) as session:
                await outbox.add(session, Timed(i=i, t=time.perf_counter()), aggregate_id=f"a{i % 16}")
        await asyncio.wait_for(done.wait(), 60)
        elapsed = time.perf_counter() - start
        await relay.stop()
        await c_bus.close()
        await p_bus.close()
        return elapsed, lat


async def _producer_alone(db: str, n: int) -> float:
    """The ceiling of the meshkit rows: the producer's transactions (one event each), nothing else running."""
    from meshkit.basis.bus import Event
    from meshkit.basis.outbox import Outbox
    from meshkit.basis.outbox.testing import create_tables
    from meshkit.basis.storage import session_factory, transaction
    from meshkit.basis.storage.testing import scratch_engine

    class Alone(Event):
        type_name: ClassVar[str] = "benchalone.event.timed"
        i: int
        t: float

    async with scratch_engine(db) as engine:
        await create_tables(engine, "benchalone")
        sessions = session_factory(engine)
        outbox = Outbox("benchalone", source="benchalone")
        start = time.perf_counter()
        for i in range(n):
            async with transaction(sessions) as session:
                await outbox.add(session, Alone(i=i, t=time.perf_counter()), aggregate_id=f"a{i % 16}")
        return n / (time.perf_counter() - start)


async def _pg_database() -> tuple[str, str] | None:
    if not _pg_up():
        return None
    import asyncpg

    name = f"meshkit_bench_{os.urandom(4).hex()}"
    conn = await asyncpg.connect(PG_DSN)
    await conn.execute(f'CREATE DATABASE "{name}"')
    await conn.close()
    base = PG_DSN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://", 1)
    return f"{base}/{name}", name


async def _drop(name: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(PG_DSN)
    await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    await conn.close()


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


async def _run(n: int) -> list[tuple[str, float, float | None, float | None]]:
    from meshkit.basis.natsd import EmbeddedNats

    tmp = Path(tempfile.mkdtemp(prefix="meshkit-bench-events-"))
    server = await EmbeddedNats(port=0, data_dir=tmp, log_file=tmp / "nats.log").start()
    rows = []
    try:
        elapsed, lat = await _raw(server.url, n)
        rows.append(("raw nats-py JetStream", n / elapsed, _pct(lat, 0.5), _pct(lat, 0.99)))
        elapsed, lat = await _meshkit(server.url, f"sqlite+aiosqlite:///{tmp / 'producer.db'}",
                                      f"sqlite+aiosqlite:///{tmp / 'consumer.db'}", n)
        rows.append(("meshkit outbox+inbox, SQLite", n / elapsed, _pct(lat, 0.5), _pct(lat, 0.99)))
        rate = await _producer_alone(f"sqlite+aiosqlite:///{tmp / 'alone.db'}", n)
        rows.append(("  (producer transactions alone)", rate, None, None))
        pg = await _pg_database()
        if pg is not None:
            try:
                elapsed, lat = await _meshkit(server.url, pg[0], pg[0], n)  # a schema per service
                rows.append(("meshkit outbox+inbox, PostgreSQL", n / elapsed, _pct(lat, 0.5), _pct(lat, 0.99)))
                rows.append(("  (producer transactions alone)", await _producer_alone(pg[0], n), None, None))
            finally:
                await _drop(pg[1])
        else:
            print("(PostgreSQL not reachable on 127.0.0.1:5432: its row is skipped)")
    finally:
        await server.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    return rows


def main(argv: list[str]) -> int:
    """Run both sides with ``argv[0]`` events each (default 2000) and print the table."""
    n = int(argv[0]) if argv else 2000
    started = time.perf_counter()
    try:
        import uvloop

        rows = uvloop.run(_run(n))
    except ImportError:
        rows = asyncio.run(_run(n))
    base = rows[0][1]
    print(f"events end to end, {n:,} per case (one event per producer transaction on the meshkit side)")
    print(f"{'case':<34} {'events/s':>10} {'p50 ms':>8} {'p99 ms':>8} {'× raw':>7}")
    for name, rate, p50, p99 in rows:
        lat = f"{p50:>8.2f} {p99:>8.2f}" if p50 is not None and p99 is not None else f"{'-':>8} {'-':>8}"
        print(f"{name:<34} {rate:>10,.0f} {lat} {rate / base:>6.2f}×")
    print("(producer transactions alone: the same producer loop with no relay or consumer running —")
    print(" the ceiling of the row above it, set by one database commit per event)")
    print(f"(ran {time.perf_counter() - started:.1f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
