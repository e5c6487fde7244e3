"""Snapshots after the aggregate's state changed shape, on SQLite and PostgreSQL: never a wrong state."""

from __future__ import annotations

import os
from typing import Any, ClassVar

import pytest

from meshkit.basis.bus import Event
from meshkit.basis.eventstore import Aggregate, EventSourcedRepository, EventStore, applies, event_tables
from meshkit.basis.storage.testing import scratch_engine


class Added(Event):
    type_name: ClassVar[str] = "snaptest.tally.added"
    n: int


class Tally(Aggregate):
    aggregate_type = "snaptest.tally"

    def __init__(self, id: str) -> None:
        super().__init__(id)
        self.total = 0

    def add(self, n: int) -> None:
        self.record(Added(n=n))

    @applies(Added)
    def _added(self, event: Added) -> None:
        self.total += event.n


class TallyWithCount(Tally):
    """The next release: one more attribute, and the developer forgot to bump snapshot_schema."""

    aggregate_type = "snaptest.tally"

    def __init__(self, id: str) -> None:
        super().__init__(id)
        self.count = 0

    @applies(Added)
    def _added(self, event: Added) -> None:
        self.total += event.n
        self.count += 1


class TallyStrictRestore(Tally):
    """A release whose restore_state expects a shape the stored snapshot does not have."""

    aggregate_type = "snaptest.tally"

    def restore_state(self, state: dict[str, Any]) -> None:
        self.total = state["sum"]


@pytest.fixture
async def store(database_url):
    async with scratch_engine(database_url) as engine:
        async with engine.begin() as conn:
            await conn.run_sync(event_tables("snaptest").metadata.create_all)
        yield EventStore(engine, prefix="snaptest")


async def saved_tally(store: EventStore) -> str:
    tally = Tally(f"t-{os.urandom(4).hex()}")
    for n in range(1, 13):
        tally.add(n)
    await EventSourcedRepository(store, Tally, snapshot_every=5).save(tally)  # snapshot at version 12
    assert (await store.snapshot(tally.id)).state == {"total": 78}
    return tally.id


async def test_a_snapshot_lacking_a_new_attribute_is_ignored_even_with_the_same_schema(store):
    # Before: restored as it was, the new attribute kept its __init__ default (count 0) for good.
    tally_id = await saved_tally(store)
    loaded = await EventSourcedRepository(store, TallyWithCount, snapshot_every=5).load(tally_id)
    assert (loaded.total, loaded.count, loaded.version) == (78, 12, 12)


async def test_a_snapshot_whose_restore_fails_is_ignored(store):
    # Before: the KeyError of restore_state failed every load of the aggregate.
    tally_id = await saved_tally(store)
    loaded = await EventSourcedRepository(store, TallyStrictRestore, snapshot_every=5).load(tally_id)
    assert (loaded.total, loaded.version) == (78, 12)
