"""Events end to end: raw nats-py JetStream vs meshkit's outbox → relay → consumer with inbox.

Both sides run as two processes, as two services would: a producer process and
a consumer process, each with its own NATS connection. Every case runs twice:
with one writer (events one after another), then with ``CONCURRENCY`` writers
at once on both sides (as concurrent requests to a service would produce them);
each meshkit row is compared with the raw row of the same group.

- raw: each writer ``js.publish``-es one event at a time, awaiting each ack; the
  consumer is a durable pull consumer fetching batches and acking each message.
- meshkit: each service has its own database (SQLite: two files; PostgreSQL: a
  schema each). Each writer commits one event per database transaction through
  ``Outbox.add``; its relay (in the producer's process, woken on commit)
  publishes with dedup ids and marks rows sent; the consumer's bus handler is
  wrapped in ``Inbox.handler``, which applies each fetched batch in one
  transaction (effect rows + inbox ids), then acks.

Latency is from the producer taking the event (before publish / before the
transaction) to the consumer having applied it (ack sent / inbox committed),
on the wall clock both processes share. Events/s is ``N`` over the time from
the first event taken to the last one applied.
Run: ``python -m bench.events [N]`` (default 2000 events per case; ~20-25 s).
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import shutil
import socket
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, ClassVar

from meshkit.basis.bus import Event

#: Writers in the concurrent group: producer tasks on the meshkit side, publisher tasks on the raw side.
CONCURRENCY = 8
#: The steady rate (events/s, one writer) of the latency group: well below every side's peak.
PACE = 200
PG_DSN = os.environ.get("MESHKIT_BENCH_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres")


class Timed(Event):
    """The benchmark's event: a number and the wall-clock time the producer took it."""

    type_name: ClassVar[str] = "benchmk.event.timed"
    i: int
    t: float


def _pg_up() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 5432), timeout=0.5):
            return True
    except OSError:
        return False


def _loop_run(coro: Any) -> Any:
    try:
        import uvloop

        return uvloop.run(coro)
    except ImportError:
        return asyncio.run(coro)


def _consumer_process(kind: str, url: str, db: str, n: int, tag: str, conn: Any) -> None:
    """The consumer service's process: signals ``ready`` when subscribed, then sends (finished_at, latencies)."""
    coro = _raw_consume(url, n, tag, conn) if kind == "raw" else _inbox_consume(url, db, n, conn)
    try:
        conn.send(_loop_run(coro))
    except Exception as exc:  # shown by the parent
        conn.send(exc)


async def _raw_consume(url: str, n: int, tag: str, conn: Any) -> tuple[float, list[float]]:
    import nats
    import orjson

    nc = await nats.connect(url)
    js = nc.jetstream()
    await js.add_stream(name=f"BENCHRAW{tag}", subjects=[f"benchraw{tag}.>"])
    sub = await js.pull_subscribe(f"benchraw{tag}.e", durable="raw", stream=f"BENCHRAW{tag}")
    conn.send("ready")
    lat: list[float] = []
    while len(lat) < n:
        try:
            msgs = await sub.fetch(256, timeout=1.0)
        except Exception:
            continue
        for m in msgs:
            sent = orjson.loads(m.data)["t"]
            await m.ack()
            lat.append(time.time() - sent)
    finished = time.time()
    await nc.close()
    return finished, lat


async def _inbox_consume(url: str, db: str, n: int, conn: Any) -> tuple[float, list[float]]:
    from sqlalchemy import Column, Integer, MetaData, String, Table, insert

    from meshkit.basis.bus import Bus, Envelope
    from meshkit.basis.inbox import Inbox
    from meshkit.basis.outbox.testing import create_tables
    from meshkit.basis.storage import session_factory
    from meshkit.basis.storage.testing import scratch_engine

    md = MetaData()
    effects = Table("bench_effects", md, Column("id", Integer, primary_key=True), Column("event_id", String(64)))
    async with scratch_engine(db) as engine:
        await create_tables(engine, "benchc", extra=md)
        inbox = Inbox(session_factory(engine), prefix="benchc", consumer="bench")
        bus = Bus(url, source="benchc")
        lat: list[float] = []
        done = asyncio.Event()

        @inbox.handler
        async def apply(event: Envelope, session) -> None:
            await session.execute(insert(effects).values(event_id=event.id))

        def committed(events) -> None:  # after the inbox transaction committed
            now = time.time()
            lat.extend(now - e.data.t for e in events)
            if len(lat) >= n:
                done.set()

        inbox.on_commit(committed)
        bus.subscribe("benchmk.event.timed", apply, durable="bench", batch=256)
        await bus.start()
        conn.send("ready")
        await asyncio.wait_for(done.wait(), 60)
        finished = time.time()
        await bus.close()
        return finished, lat


async def _side_by_side(
    kind: str, url: str, db: str, n: int, produce: Any, tag: str = ""
) -> tuple[float, list[float]]:
    """Start the consumer process, run ``produce()`` here once it is ready; (elapsed, latencies)."""
    ctx = multiprocessing.get_context("spawn")
    mine, theirs = ctx.Pipe()
    child = ctx.Process(target=_consumer_process, args=(kind, url, db, n, tag, theirs), daemon=True)
    child.start()
    loop = asyncio.get_running_loop()
    try:
        if not await loop.run_in_executor(None, mine.poll, 30):
            raise RuntimeError("the consumer process did not start in 30 s")
        ready = mine.recv()
        if isinstance(ready, Exception):
            raise ready
        start = time.time()
        await produce()
        if not await loop.run_in_executor(None, mine.poll, 60):
            raise RuntimeError("the consumer did not receive every event in 60 s")
        result = mine.recv()
        if isinstance(result, Exception):
            raise result
        finished, lat = result
        return finished - start, lat
    finally:
        child.join(5)
        if child.is_alive():
            child.kill()


async def _writers(n: int, concurrency: int, one: Any, pace: float | None = None) -> None:
    """``one(i)`` for i in 0..n-1: in order, or from ``concurrency`` tasks at once (as concurrent requests would);
    with ``pace``, one writer starting event i at i / pace seconds (a steady load, for latency)."""
    if pace is not None:
        start = time.perf_counter()
        for i in range(n):
            delay = start + i / pace - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            await one(i)
        return
    if concurrency == 1:
        for i in range(n):
            await one(i)
        return

    async def writer(k: int) -> None:
        for i in range(k, n, concurrency):
            await one(i)

    await asyncio.gather(*(writer(k) for k in range(concurrency)))


async def _raw(url: str, n: int, concurrency: int = 1, pace: float | None = None) -> tuple[float, list[float]]:
    import nats
    import orjson

    nc = await nats.connect(url)
    js = nc.jetstream()
    tag = f"c{concurrency}" if pace is None else "paced"

    async def one(i: int) -> None:
        body = orjson.dumps({"i": i, "t": time.time()})
        await js.publish(f"benchraw{tag}.e", body, headers={"Nats-Msg-Id": f"{tag}r{i}"})

    async def produce() -> None:
        await _writers(n, concurrency, one, pace)

    try:
        return await _side_by_side("raw", url, "", n, produce, tag)
    finally:
        await nc.close()


async def _meshkit(
    url: str, producer_db: str, consumer_db: str, n: int, concurrency: int = 1, pace: float | None = None
) -> tuple[float, list[float]]:
    from meshkit.basis.bus import Bus
    from meshkit.basis.outbox import Outbox, Relay
    from meshkit.basis.outbox.testing import create_tables
    from meshkit.basis.storage import session_factory, transaction
    from meshkit.basis.storage.testing import scratch_engine

    async with scratch_engine(producer_db) as engine:
        await create_tables(engine, "benchp")
        sessions = session_factory(engine)
        outbox = Outbox("benchp", source="benchp")
        bus = Bus(url, source="benchp")
        relay = Relay(outbox, sessions, bus, holder="bench", poll=0.05)
        await bus.connect()
        await relay.start()

        async def one(i: int) -> None:
            async with transaction(sessions) as session:
                await outbox.add(session, Timed(i=i, t=time.time()), aggregate_id=f"a{i % 16}")

        async def produce() -> None:
            await _writers(n, concurrency, one, pace)

        try:
            return await _side_by_side("meshkit", url, consumer_db, n, produce)
        finally:
            await relay.stop()
            await bus.close()


async def _producer_alone(db: str, n: int, concurrency: int = 1) -> float:
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
        async def one(i: int) -> None:
            async with transaction(sessions) as session:
                await outbox.add(session, Alone(i=i, t=time.perf_counter()), aggregate_id=f"a{i % 16}")

        start = time.perf_counter()
        await _writers(n, concurrency, one)
        return n / (time.perf_counter() - start)


async def _bare(db: str, n: int, concurrency: int = 1) -> float:
    """The floor under every framework: the driver alone, one durable commit per event, nothing else.

    PostgreSQL: asyncpg, ``BEGIN`` / ``INSERT`` / ``COMMIT`` per event (one connection per
    writer, ``synchronous_commit`` as the server has it). SQLite: ``sqlite3`` in WAL with
    ``synchronous=NORMAL`` (as meshkit configures it), each transaction in one hop to a
    writer thread, as an async service must do to keep its loop free.
    """
    import orjson

    body = orjson.dumps({"i": 0, "t": time.time(), "pad": "x" * 160})
    if db.startswith("postgresql"):
        import asyncpg

        dsn = db.replace("postgresql+asyncpg://", "postgresql://", 1)
        conns = [await asyncpg.connect(dsn) for _ in range(concurrency)]
        free = list(conns)
        try:
            await conns[0].execute("CREATE TABLE IF NOT EXISTS bench_bare (seq bigserial PRIMARY KEY, "
                                   "event_id text NOT NULL, body bytea NOT NULL)")

            async def one(i: int) -> None:
                conn = free.pop()
                try:
                    async with conn.transaction():
                        await conn.execute("INSERT INTO bench_bare (event_id, body) VALUES ($1, $2)", f"e{i}", body)
                finally:
                    free.append(conn)

            start = time.perf_counter()
            await _writers(n, concurrency, one)
            return n / (time.perf_counter() - start)
        finally:
            for conn in conns:
                await conn.close()
    import sqlite3
    from concurrent.futures import ThreadPoolExecutor

    path = db.split(":///", 1)[1]
    con = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("PRAGMA synchronous=NORMAL")
    con.execute("CREATE TABLE IF NOT EXISTS bench_bare (seq INTEGER PRIMARY KEY, event_id TEXT NOT NULL, "
                "body BLOB NOT NULL)")

    def commit(i: int) -> None:
        con.execute("BEGIN IMMEDIATE")
        con.execute("INSERT INTO bench_bare (event_id, body) VALUES (?, ?)", (f"e{i}", body))
        con.execute("COMMIT")

    loop = asyncio.get_running_loop()
    with ThreadPoolExecutor(1) as writer:
        async def one(i: int) -> None:
            await loop.run_in_executor(writer, commit, i)

        start = time.perf_counter()
        await _writers(n, concurrency, one)
        rate = n / (time.perf_counter() - start)
    con.close()
    return rate


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


Row = tuple[str, float, float | None, float | None]


async def _paced(url: str, tmp: Path, pg: tuple[str, str] | None, n: int) -> list[Row]:
    """Latency at a steady PACE events/s from one writer, far from any side's peak: what a consumer waits."""
    rows: list[Row] = []
    elapsed, lat = await _raw(url, n, 1, PACE)
    rows.append(("raw nats-py JetStream", n / elapsed, _pct(lat, 0.5), _pct(lat, 0.99)))
    elapsed, lat = await _meshkit(url, f"sqlite+aiosqlite:///{tmp / 'producer-paced.db'}",
                                  f"sqlite+aiosqlite:///{tmp / 'consumer-paced.db'}", n, 1, PACE)
    rows.append(("meshkit outbox+inbox, SQLite", n / elapsed, _pct(lat, 0.5), _pct(lat, 0.99)))
    if pg is not None:
        elapsed, lat = await _meshkit(url, pg[0], pg[0], n, 1, PACE)
        rows.append(("meshkit outbox+inbox, PostgreSQL", n / elapsed, _pct(lat, 0.5), _pct(lat, 0.99)))
    return rows


async def _run(n: int) -> list[list[Row]]:
    """Two groups of rows: one writer (sequential), then CONCURRENCY writers on both sides; then
    the latency group (one writer at a steady PACE)."""
    from meshkit.basis.natsd import EmbeddedNats

    tmp = Path(tempfile.mkdtemp(prefix="meshkit-bench-events-"))
    server = await EmbeddedNats(port=0, data_dir=tmp, log_file=tmp / "nats.log").start()
    pg = await _pg_database()
    if pg is None:
        print("(PostgreSQL not reachable on 127.0.0.1:5432: its rows are skipped)")
    groups = []
    try:
        for c in (1, CONCURRENCY):
            who = "" if c == 1 else f", {c} writers"
            rows: list[Row] = []
            elapsed, lat = await _raw(server.url, n, c)
            rows.append((f"raw nats-py JetStream{who.replace('writers', 'publishers')}", n / elapsed,
                         _pct(lat, 0.5), _pct(lat, 0.99)))
            elapsed, lat = await _meshkit(server.url, f"sqlite+aiosqlite:///{tmp / f'producer{c}.db'}",
                                          f"sqlite+aiosqlite:///{tmp / f'consumer{c}.db'}", n, c)
            rows.append((f"meshkit outbox+inbox, SQLite{who}", n / elapsed, _pct(lat, 0.5), _pct(lat, 0.99)))
            rate = await _producer_alone(f"sqlite+aiosqlite:///{tmp / f'alone{c}.db'}", n, c)
            rows.append(("  (producer transactions alone)", rate, None, None))
            rows.append(("  (bare sqlite3, one commit per event)",
                         await _bare(f"sqlite+aiosqlite:///{tmp / f'bare{c}.db'}", n, c), None, None))
            if pg is not None:
                elapsed, lat = await _meshkit(server.url, pg[0], pg[0], n, c)  # a schema per service
                rows.append((f"meshkit outbox+inbox, PostgreSQL{who}", n / elapsed, _pct(lat, 0.5), _pct(lat, 0.99)))
                rows.append(("  (producer transactions alone)", await _producer_alone(pg[0], n, c), None, None))
                rows.append(("  (bare asyncpg, one commit per event)", await _bare(pg[0], n, c), None, None))
            groups.append(rows)
        groups.append(await _paced(server.url, tmp, pg, min(n, 2 * PACE)))
    finally:
        if pg is not None:
            await _drop(pg[1])
        await server.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    return groups


def main(argv: list[str]) -> int:
    """Run both sides with ``argv[0]`` events each (default 2000) and print the table."""
    n = int(argv[0]) if argv else 2000
    started = time.perf_counter()
    groups = _loop_run(_run(n))
    print(f"events end to end, {n:,} per case, producer and consumer in two processes "
          "(one event per producer transaction on the meshkit side)")
    print(f"{'case':<44} {'events/s':>10} {'p50 ms':>8} {'p99 ms':>8} {'× raw':>7}")
    paced = groups.pop()
    for rows in groups:
        base = rows[0][1]  # each group against the raw row with the same number of writers
        for name, rate, p50, p99 in rows:
            lat = f"{p50:>8.2f} {p99:>8.2f}" if p50 is not None and p99 is not None else f"{'-':>8} {'-':>8}"
            print(f"{name:<44} {rate:>10,.0f} {lat} {rate / base:>6.2f}×")
    print("(producer transactions alone: the same producer loop with no relay or consumer running —")
    print(" the ceiling of the row above it, set by one database commit per event)")
    print("(bare: the driver alone — sqlite3 on a writer thread, asyncpg — one durable commit per event, no")
    print(" framework, no relay: the floor under any outbox that commits each event; where it is below")
    print(" 0.5× raw, no outbox on that database reaches the target with one commit per event)")
    print(f"({CONCURRENCY} writers: the producer runs {CONCURRENCY} tasks at once, as concurrent requests would;")
    print(f" the raw side gets the same: {CONCURRENCY} concurrent publishers, each awaiting its ack)")
    print(f"\nlatency at a steady {PACE} events/s, one writer ({len(paced[0]) and min(n, 2 * PACE)} events): "
          "from the producer taking an event to the consumer having applied it")
    print(f"{'case':<44} {'p50 ms':>8} {'p99 ms':>8}")
    for name, _rate, p50, p99 in paced:
        print(f"{name:<44} {p50:>8.2f} {p99:>8.2f}")
    print(f"(ran {time.perf_counter() - started:.1f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
