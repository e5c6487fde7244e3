"""The event store on SQLite and PostgreSQL: one suite, both engines.

Append/load, optimistic concurrency (a stale append and a true race: exactly
one wins), snapshots against full replay, the outbox written in the same
transaction, a service's own Alembic revision creating the tables, and stored
events reaching a real NATS through the outbox relay.
"""

from __future__ import annotations

import asyncio
import os
import sys
from typing import ClassVar

import pytest
from sqlalchemy import func, inspect, select

from helpers.migrations import write_migrations
from meshkit.basis.bus import Bus, Envelope, Event
from meshkit.basis.errors import Conflict, NotFound, Unprocessable
from meshkit.basis.eventstore import (
    Aggregate,
    EventSourcedRepository,
    EventStore,
    applies,
    event_tables,
    handles,
)
from meshkit.basis.outbox import Outbox, Relay, tables_for
from meshkit.basis.storage import migrate, session_factory, transaction
from meshkit.basis.storage.testing import scratch_engine

PREFIX = "bank"


class Opened(Event):
    type_name: ClassVar[str] = "estest.account.opened"
    owner: str


class Deposited(Event):
    type_name: ClassVar[str] = "estest.account.deposited"
    amount: int


class Withdrawn(Event):
    type_name: ClassVar[str] = "estest.account.withdrawn"
    amount: int


class Withdraw(Event):
    type_name: ClassVar[str] = "estest.account.withdraw"
    amount: int


class Account(Aggregate):
    aggregate_type = "estest.account"

    def __init__(self, id: str) -> None:
        super().__init__(id)
        self.owner = ""
        self.balance = 0
        self.history: list[int] = []

    def open(self, owner: str) -> None:
        self.record(Opened(owner=owner))

    def deposit(self, amount: int) -> None:
        self.record(Deposited(amount=amount))

    @handles(Withdraw)
    def _withdraw(self, command: Withdraw) -> Withdrawn:
        if command.amount > self.balance:
            raise Unprocessable("not enough money", reason="insufficient_funds")
        return Withdrawn(amount=command.amount)

    @applies(Opened)
    def _opened(self, event: Opened) -> None:
        self.owner = event.owner

    @applies(Deposited)
    def _deposited(self, event: Deposited) -> None:
        self.balance += event.amount
        self.history.append(event.amount)

    @applies(Withdrawn)
    def _withdrawn(self, event: Withdrawn) -> None:
        self.balance -= event.amount
        self.history.append(-event.amount)


@pytest.fixture(scope="module")
def migrations(tmp_path_factory):
    """A service's own migrations package whose revision calls the outbox and event store migrations."""
    root = tmp_path_factory.mktemp("pkgs")
    name = f"estest_{os.urandom(3).hex()}"
    package = write_migrations(
        root, f"{name}.migrations", "b1", version_table=f"alembic_version_{name}",
        imports="""
            from alembic import op

            from meshkit.basis.eventstore import migration as eventstore
            from meshkit.basis.outbox import migration as messaging
        """,
        upgrade=f"""
            messaging.upgrade(op, "{PREFIX}", only=("outbox", "leases"))
            eventstore.upgrade(op, "{PREFIX}")
        """,
        downgrade=f"""
            eventstore.downgrade(op, "{PREFIX}")
            messaging.downgrade(op, "{PREFIX}", only=("outbox", "leases"))
        """,
    )
    sys.path.insert(0, str(root))
    yield package
    sys.path.remove(str(root))


@pytest.fixture
async def engine(database_url, migrations):
    async with scratch_engine(database_url) as engine:
        assert await migrate(engine, migrations) == "b1"
        yield engine


@pytest.fixture
def outbox():
    return Outbox(PREFIX, source="bank")


@pytest.fixture
def store(engine, outbox):
    return EventStore(engine, prefix=PREFIX, outbox=outbox)


def new_id() -> str:
    return f"acc-{os.urandom(4).hex()}"


async def outbox_rows(engine) -> list:
    t = tables_for(PREFIX).outbox
    async with transaction(session_factory(engine), write=False) as s:
        return (await s.execute(select(t.c.event_id, t.c.subject, t.c.aggregate_id).order_by(t.c.seq))).all()


async def test_the_service_migration_creates_the_tables(engine):
    async with engine.connect() as conn:
        names = set(await conn.run_sync(lambda c: inspect(c).get_table_names()))
    assert {f"{PREFIX}_events", f"{PREFIX}_snapshots", f"{PREFIX}_outbox"} <= names


async def test_append_then_load_in_order_with_positions(store):
    aid = new_id()
    stored = await store.append(
        aid, [Opened(owner="ann"), Deposited(amount=5), Deposited(amount=7)],
        expected_version=0, aggregate_type="estest.account", metadata={"by": "test"},
    )
    assert [e.version for e in stored] == [1, 2, 3]
    assert stored[0].position < stored[1].position < stored[2].position
    more = await store.append(aid, [Withdrawn(amount=2)], expected_version=3, aggregate_type="estest.account")
    loaded = await store.load(aid)
    assert [(e.version, e.type) for e in loaded] == [
        (1, "estest.account.opened"), (2, "estest.account.deposited"),
        (3, "estest.account.deposited"), (4, "estest.account.withdrawn"),
    ]
    assert [e.event_id for e in loaded] == [e.event_id for e in stored + more]
    assert loaded[1].data == {"amount": 5} and loaded[0].metadata == {"by": "test"}
    assert loaded[0].recorded_at.tzinfo is not None
    assert [e.version for e in await store.load(aid, after_version=2)] == [3, 4]
    assert await store.version(aid) == 4 and await store.version("nobody") == 0
    everything = await store.read_all(after_position=stored[0].position)
    assert [e.event_id for e in everything if e.aggregate_id == aid] == [e.event_id for e in loaded[1:]]


async def test_a_stale_append_is_a_version_conflict_and_writes_nothing(store, engine):
    aid = new_id()
    await store.append(aid, [Opened(owner="bo")], expected_version=0, aggregate_type="estest.account")
    before = len(await outbox_rows(engine))
    with pytest.raises(Conflict) as info:
        await store.append(aid, [Deposited(amount=1)], expected_version=0, aggregate_type="estest.account")
    assert info.value.reason == "version_conflict" and info.value.status == 409
    assert info.value.details == {"aggregate_id": aid, "expected": 0, "actual": 1}
    assert "reload" in info.value.message
    assert await store.version(aid) == 1
    assert len(await outbox_rows(engine)) == before


async def test_two_concurrent_appends_at_one_version_exactly_one_wins(store):
    aid = new_id()
    await store.append(aid, [Opened(owner="cy")], expected_version=0, aggregate_type="estest.account")

    async def attempt(n: int):
        try:
            return await store.append(aid, [Deposited(amount=n)], expected_version=1, aggregate_type="estest.account")
        except Conflict as exc:
            return exc

    results = await asyncio.gather(*(attempt(n) for n in range(1, 9)))
    winners = [r for r in results if not isinstance(r, Conflict)]
    losers = [r for r in results if isinstance(r, Conflict)]
    assert len(winners) == 1 and len(losers) == 7
    assert all(c.reason == "version_conflict" and c.details["actual"] == 2 for c in losers)
    assert [e.version for e in await store.load(aid)] == [1, 2]


async def test_a_race_lost_on_the_unique_constraint_reports_the_winner(store, engine):
    # A holds its append open (inserted, not committed) while B appends at the same
    # version: B waits for A's row, then fails — on the constraint (PostgreSQL) or on
    # the re-check after the write lock (SQLite). Either way: version_conflict, actual 1.
    aid = new_id()
    sessions = session_factory(engine)
    async with transaction(sessions) as session:
        await store.append(aid, [Opened(owner="a")], expected_version=0, aggregate_type="estest.account", session=session)
        other = asyncio.create_task(
            store.append(aid, [Opened(owner="b")], expected_version=0, aggregate_type="estest.account")
        )
        await asyncio.sleep(0.3)
        assert not other.done()
    with pytest.raises(Conflict) as info:
        await other
    assert info.value.reason == "version_conflict"
    assert info.value.details == {"aggregate_id": aid, "expected": 0, "actual": 1}
    assert [e.data["owner"] for e in await store.load(aid)] == ["a"]


async def test_appended_events_are_in_the_outbox_with_their_ids_in_order(store, engine):
    aid = new_id()
    stored = await store.append(
        aid, [Opened(owner="di"), Deposited(amount=3)], expected_version=0, aggregate_type="estest.account"
    )
    rows = [r for r in await outbox_rows(engine) if r.aggregate_id == aid]
    assert [r.event_id for r in rows] == [e.event_id for e in stored]
    assert [r.subject for r in rows] == ["estest.account.opened", "estest.account.deposited"]


async def test_append_inside_the_callers_transaction_rolls_back_with_it(store, engine):
    aid = new_id()
    sessions = session_factory(engine)
    with pytest.raises(RuntimeError):
        async with transaction(sessions) as session:
            await store.append(aid, [Opened(owner="ed")], expected_version=0, aggregate_type="estest.account",
                               session=session)
            raise RuntimeError("the business write failed")
    assert await store.load(aid) == []
    assert not [r for r in await outbox_rows(engine) if r.aggregate_id == aid]


async def test_repository_round_trip_commands_and_conflicts(store):
    accounts = EventSourcedRepository(store, Account, snapshot_every=0)
    acc = Account(new_id())
    acc.open("fay")
    acc.deposit(10)
    await accounts.save(acc)
    assert acc.pending_events == [] and acc.version == 2

    first, second = await accounts.load(acc.id), await accounts.load(acc.id)
    first.handle(Withdraw(amount=4))
    await accounts.save(first)
    second.handle(Withdraw(amount=6))
    with pytest.raises(Conflict) as info:
        await accounts.save(second)
    assert info.value.details == {"aggregate_id": acc.id, "expected": 2, "actual": 3}
    assert len(second.pending_events) == 1  # kept for the caller to inspect

    again = await accounts.load(acc.id)
    assert (again.owner, again.balance, again.version) == ("fay", 6, 3)
    with pytest.raises(Unprocessable):
        again.handle(Withdraw(amount=100))
    with pytest.raises(NotFound):
        await accounts.load("no-such-account")
    assert await accounts.get("no-such-account") is None


async def test_snapshots_every_n_events_load_equal_to_full_replay(store):
    snapshotting = EventSourcedRepository(store, Account, snapshot_every=10)
    replaying = EventSourcedRepository(store, Account, snapshot_every=0)
    acc = Account(new_id())
    acc.open("gus")
    await snapshotting.save(acc)
    for n in range(1, 25):  # versions 2..25, one save each: snapshots at 10 and 20
        acc.deposit(n)
        await snapshotting.save(acc)
    snap = await store.snapshot(acc.id)
    assert snap is not None and snap.version == 20 and snap.aggregate_type == "estest.account"

    fast, slow = await snapshotting.load(acc.id), await replaying.load(acc.id)
    assert fast.version == slow.version == 25
    assert fast.snapshot_state() == slow.snapshot_state() == acc.snapshot_state()
    assert fast.balance == sum(range(1, 25))

    # A save of several events that crosses a multiple snapshots at the new version.
    for n in range(6):
        fast.deposit(100 + n)
    await snapshotting.save(fast)
    assert (await store.snapshot(acc.id)).version == 31
    assert (await snapshotting.load(acc.id)).snapshot_state() == (await replaying.load(acc.id)).snapshot_state()


async def test_a_snapshot_of_an_older_shape_is_ignored(store):
    class AccountV2(Account):
        aggregate_type = "estest.account"
        snapshot_schema = 2

    acc = Account(new_id())
    acc.open("hal")
    for n in range(12):
        acc.deposit(n)
    await EventSourcedRepository(store, Account, snapshot_every=5).save(acc)
    assert (await store.snapshot(acc.id)).schema == 1
    loaded = await EventSourcedRepository(store, AccountV2, snapshot_every=5).load(acc.id)
    assert loaded.balance == sum(range(12)) and loaded.version == 13


async def test_an_older_snapshot_never_replaces_a_newer_one(store, engine):
    from meshkit.basis.eventstore import Snapshot

    aid = new_id()
    await store.save_snapshot(Snapshot(aid, "estest.account", 20, 1, {"balance": 20}))
    await store.save_snapshot(Snapshot(aid, "estest.account", 10, 1, {"balance": 10}))
    assert (await store.snapshot(aid)).version == 20
    await store.save_snapshot(Snapshot(aid, "estest.account", 30, 1, {"balance": 30}))
    assert (await store.snapshot(aid)).state == {"balance": 30}


async def test_stored_events_reach_nats_through_the_relay_in_order(store, engine, outbox, nats_server):
    tag = os.urandom(3).hex()
    bus = Bus(nats_server, source="bank")
    bus.publishes(Opened, Deposited, Withdrawn)
    got: list[Envelope] = []

    @bus.handler("estest.account.>", durable=f"es-{tag}", start="new")
    async def on_event(env: Envelope) -> None:
        if env.subject == aid:
            got.append(env)

    aid = f"acc-{tag}"
    await bus.connect()
    await bus.start()
    relay = Relay(outbox, session_factory(engine), bus, holder=f"test-{tag}")
    try:
        accounts = EventSourcedRepository(store, Account)
        acc = Account(aid)
        acc.open("ivy")
        acc.deposit(1)
        acc.deposit(2)
        stored = await accounts.save(acc)
        while await relay.run_once():
            pass
        for _ in range(250):
            if len(got) >= 3:
                break
            await asyncio.sleep(0.02)
        assert [e.id for e in got] == [e.event_id for e in stored]
        assert [e.type for e in got] == ["estest.account.opened", "estest.account.deposited", "estest.account.deposited"]
        assert isinstance(got[1].data, Deposited) and got[1].data.amount == 1
        assert got[0].source == "bank"
    finally:
        await bus.close()


async def test_counts_are_exact_after_many_saves(store, engine):
    accounts = EventSourcedRepository(store, Account, snapshot_every=4)
    ids = [new_id() for _ in range(5)]
    for aid in ids:
        acc = Account(aid)
        acc.open("x")
        await accounts.save(acc)
    for round_ in range(6):
        for aid in ids:
            acc = await accounts.load(aid)
            acc.deposit(round_)
            await accounts.save(acc)
    t = event_tables(PREFIX).events
    async with transaction(session_factory(engine), write=False) as s:
        count = (await s.execute(select(func.count()).where(t.c.aggregate_id.in_(ids)))).scalar_one()
    assert count == 5 * 7
    assert len([r for r in await outbox_rows(engine) if r.aggregate_id in ids]) == 5 * 7
    assert [(await accounts.load(aid)).balance for aid in ids] == [sum(range(6))] * 5

