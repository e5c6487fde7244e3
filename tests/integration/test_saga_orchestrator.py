"""The saga orchestrator on SQLite and PostgreSQL: outcomes, retries, timeouts, leases, the worker.

The participants are the worked example's (:mod:`meshkit.basis.saga.demo`):
effects are rows keyed by the idempotency key, so every test counts them.
"""

from __future__ import annotations

import asyncio
import os
import sys

import pytest
from sqlalchemy import inspect, text

from helpers.migrations import write_migrations
from meshkit.basis.client.retry import Backoff
from meshkit.basis.errors import GatewayTimeout, NotFound, Unprocessable
from meshkit.basis.saga import (
    COMPENSATED,
    COMPLETED,
    FAILED,
    Abort,
    Saga,
    SagaOrchestrator,
    Step,
    StepContext,
)
from meshkit.basis.saga.demo import PREFIX, Participants, checkout_saga, prepare
from meshkit.basis.storage import create_engine, migrate, session_factory, transaction
from meshkit.basis.storage.testing import scratch_engine

FAST = Backoff(base=0.01, cap=0.02)


@pytest.fixture
async def engine(database_url):
    async with scratch_engine(database_url) as engine:
        yield engine


@pytest.fixture
async def participants(tmp_path):
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path}/participants.db")
    p = Participants(engine)
    await p.setup()
    yield p
    await engine.dispose()


@pytest.fixture
async def orchestrator(engine, participants):
    await prepare(engine, participants)
    orch = SagaOrchestrator(engine, prefix=PREFIX, sagas=[checkout_saga(participants, timeout=1.0)], owner="t1")
    for step in orch.sagas["checkout"].steps:
        object.__setattr__(step, "backoff", FAST)
    yield orch
    await orch.stop()


def order(**extra) -> dict:
    return {"order_id": f"o-{os.urandom(3).hex()}", "sku": "A", "qty": 2, "amount": 1500, **extra}


def assert_consistent(state, effects: dict[str, dict[str, int]]) -> None:
    """Exactly one end, and each participant applied once (completed) or net nothing (compensated)."""
    assert state.status in (COMPLETED, COMPENSATED)
    for name, e in effects.items():
        assert e["apply"] <= 1 and e["undo"] <= 1, (name, e)
        if state.status == COMPLETED:
            assert (e["apply"], e["undo"]) == (1, 0), (name, e)
        elif e["apply"]:
            assert e["undo"] == 1, (name, e)  # applied → compensated exactly once


async def test_happy_path_completes_with_each_effect_once(orchestrator, participants):
    saga_id = await orchestrator.begin("checkout", order())
    state = await orchestrator.run(saga_id)
    assert state.status == COMPLETED and state.done
    assert state.data["reservation_id"] == f"res-{saga_id}" and state.data["confirmed"] is True
    effects = await participants.effects(saga_id)
    assert {p: (e["apply"], e["undo"], e["calls"]) for p, e in effects.items()} == {
        "inventory": (1, 0, 1), "payments": (1, 0, 1), "orders": (1, 0, 1),
    }
    events = [(e.phase, e.step, e.event) for e in await orchestrator.history(saga_id)]
    assert events[0] == ("saga", "", "started") and events[-1] == ("saga", "", "completed")
    assert ("action", "charge", "succeeded") in events


async def test_transient_failures_are_retried_then_succeed(orchestrator, participants):
    saga_id = await orchestrator.begin("checkout", order(flaky=2))
    state = await orchestrator.run(saga_id)
    assert state.status == COMPLETED
    effects = await participants.effects(saga_id)
    assert effects["payments"] == {"apply": 1, "undo": 0, "calls": 3}
    failed = [e for e in await orchestrator.history(saga_id) if e.event == "failed"]
    assert [e.attempt for e in failed] == [1, 2] and "ConnectionError" in failed[0].detail


async def test_retries_run_out_then_everything_started_is_compensated(orchestrator, participants):
    saga_id = await orchestrator.begin("checkout", order(flaky=10))
    state = await orchestrator.run(saga_id)
    assert state.status == COMPENSATED and "no attempts left" not in (state.error or "")
    assert "ConnectionError" in state.error
    effects = await participants.effects(saga_id)
    assert effects["payments"]["calls"] == 4 + 1  # 4 attempts, then the refund
    assert_consistent(state, effects)
    assert effects["inventory"] == {"apply": 1, "undo": 1, "calls": 2}


async def test_a_declined_card_compensates_without_retrying(orchestrator, participants):
    saga_id = await orchestrator.begin("checkout", order(decline=True))
    state = await orchestrator.run(saga_id)
    assert state.status == COMPENSATED and "card declined" in state.error
    effects = await participants.effects(saga_id)
    assert effects["payments"] == {"apply": 0, "undo": 1, "calls": 2}  # one charge call, one (no-op) refund
    assert effects["inventory"] == {"apply": 1, "undo": 1, "calls": 2}
    assert effects["orders"]["calls"] == 0
    assert_consistent(state, effects)


async def test_a_failed_last_step_undoes_the_earlier_ones_in_reverse(orchestrator, participants):
    saga_id = await orchestrator.begin("checkout", order(fail_confirm=True))
    state = await orchestrator.run(saga_id)
    assert state.status == COMPENSATED
    undone = [e.step for e in await orchestrator.history(saga_id) if e.phase == "compensation" and e.event == "succeeded"]
    assert undone == ["charge", "reserve"]  # confirm has no compensation
    assert_consistent(state, await participants.effects(saga_id))


async def test_a_step_that_times_out_is_retried_and_counted(engine, participants):
    await prepare(engine, participants)
    saga = checkout_saga(participants, timeout=0.2, retries=1)
    orch = SagaOrchestrator(engine, prefix=PREFIX, sagas=[saga], owner="t-timeout")
    saga_id = await orch.begin("checkout", order(slow=5))
    state = await orch.run(saga_id)
    assert state.status == COMPENSATED and "timed out" in state.error
    timed_out = [e for e in await orch.history(saga_id) if e.event == "timed_out"]
    assert [e.attempt for e in timed_out] == [1, 2]
    effects = await participants.effects(saga_id)
    assert effects["payments"]["apply"] == 0 and effects["payments"]["undo"] == 1
    assert_consistent(state, effects)


async def test_begin_is_idempotent_on_the_saga_id_and_can_join_a_transaction(orchestrator, engine):
    sid = f"fixed-{os.urandom(3).hex()}"
    assert await orchestrator.begin("checkout", order(), saga_id=sid) == sid
    assert await orchestrator.begin("checkout", order(qty=99), saga_id=sid) == sid
    assert (await orchestrator.get(sid)).data["qty"] == 2

    rolled = f"rolled-{os.urandom(3).hex()}"
    with pytest.raises(Unprocessable):
        async with transaction(session_factory(engine)) as session:
            await orchestrator.begin("checkout", order(), saga_id=rolled, session=session)
            raise Unprocessable("the order itself was invalid")
    with pytest.raises(NotFound):
        await orchestrator.get(rolled)


async def test_two_orchestrators_never_drive_one_saga_at_once(engine, participants):
    await prepare(engine, participants)
    gate = asyncio.Event()
    entered = []

    async def slow_reserve(ctx: StepContext):
        entered.append(ctx.fence)
        await gate.wait()
        return await participants.reserve(ctx)

    saga = Saga("checkout", [Step("reserve", slow_reserve, participants.release, timeout=5)])
    a = SagaOrchestrator(engine, prefix=PREFIX, sagas=[saga], owner="a", lease_ttl=5)
    b = SagaOrchestrator(engine, prefix=PREFIX, sagas=[saga], owner="b", lease_ttl=5)
    saga_id = await a.begin("checkout", order())
    first = asyncio.create_task(a.run(saga_id))
    while not entered:
        await asyncio.sleep(0.01)
    second = await b.run(saga_id)  # cannot claim: a holds the lease
    assert second.status == "running" and second.lease_owner == "a"
    assert await b.resume() == 0
    gate.set()
    assert (await first).status == COMPLETED
    assert entered == [1]
    assert (await participants.effects(saga_id))["inventory"]["calls"] == 1


async def test_an_expired_lease_is_taken_over_and_the_stale_driver_is_fenced_off(engine, participants):
    await prepare(engine, participants)
    stall = asyncio.Event()
    calls: list[tuple[str, int]] = []

    async def reserve(ctx: StepContext):
        calls.append((ctx.saga, ctx.fence))
        if ctx.fence == 1:
            await stall.wait()  # the first driver hangs (a GC pause, a partition...)
        return await participants.reserve(ctx)

    saga = Saga("checkout", [Step("reserve", reserve, participants.release, timeout=30)])
    a = SagaOrchestrator(engine, prefix=PREFIX, sagas=[saga], owner="a", lease_ttl=0.6)
    b = SagaOrchestrator(engine, prefix=PREFIX, sagas=[saga], owner="b", lease_ttl=0.6)
    saga_id = await a.begin("checkout", order())
    # a's renewals are stopped by hand to simulate a stalled process: its lease lapses.
    a.store.renew = _never_renew  # type: ignore[method-assign]
    stuck = asyncio.create_task(a.run(saga_id))
    while not calls:
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.8)
    assert await b.resume() == 1
    assert (await b.get(saga_id)).status == COMPLETED
    stall.set()
    state = await stuck  # a wakes up, its write is refused: no second end, no second effect
    assert state.status == COMPLETED and state.lease_owner == "b"
    assert [f for _, f in calls] == [1, 2]
    effects = await participants.effects(saga_id)
    assert effects["inventory"]["apply"] == 1
    ends = [e for e in await b.history(saga_id) if e.phase == "saga" and e.event != "started"]
    assert [e.event for e in ends] == [COMPLETED] and ends[0].owner == "b"


async def _never_renew(state, ttl):
    await asyncio.sleep(3600)
    return True


async def test_the_worker_drives_new_sagas_and_stops_cleanly(orchestrator, participants):
    await orchestrator.start()
    ids = [await orchestrator.begin("checkout", order(decline=(i % 3 == 0))) for i in range(6)]
    states = [await orchestrator.wait(i, timeout=20) for i in ids]
    assert [s.status for s in states] == [COMPENSATED if i % 3 == 0 else COMPLETED for i in range(6)]
    for s in states:
        assert_consistent(s, await participants.effects(s.id))
    await orchestrator.stop()
    with pytest.raises(GatewayTimeout):
        late = await orchestrator.begin("checkout", order())
        await orchestrator.wait(late, timeout=0.3)


async def test_a_compensation_that_keeps_failing_ends_failed_when_bounded(engine, participants):
    await prepare(engine, participants)

    async def broken_release(ctx: StepContext):
        raise ConnectionError("inventory is down")

    async def decline(ctx: StepContext):
        raise Abort("no")

    saga = Saga("checkout", [
        Step("reserve", participants.reserve, broken_release, compensation_attempts=3, backoff=FAST),
        Step("charge", decline, participants.refund),
    ])
    orch = SagaOrchestrator(engine, prefix=PREFIX, sagas=[saga], owner="t-failed")
    saga_id = await orch.begin("checkout", order())
    state = await orch.run(saga_id)
    assert state.status == FAILED and "inventory is down" in state.error
    attempts = [e.attempt for e in await orch.history(saga_id) if e.phase == "compensation" and e.step == "reserve"
                and e.event == "failed"]
    assert attempts == [1, 2, 3]


async def test_unknown_sagas_are_refused_and_left_alone(orchestrator, engine):
    with pytest.raises(Exception, match="unknown saga"):
        await orchestrator.begin("no-such-saga", {})
    # A saga some other version registered: this orchestrator releases it untouched.
    other = SagaOrchestrator(
        engine, prefix=PREFIX, owner="x",
        sagas=[Saga("refund", [Step("pay", _noop)])],
    )
    saga_id = await other.begin("refund", {})
    state = await orchestrator.run(saga_id)
    assert state.status == "running" and state.lease_until == 0.0
    assert (await other.run(saga_id)).status == COMPLETED


async def _noop(ctx: StepContext):
    return None


@pytest.fixture(scope="module")
def saga_migrations(tmp_path_factory):
    root = tmp_path_factory.mktemp("sagapkgs")
    name = f"sagatest_{os.urandom(3).hex()}"
    package = write_migrations(
        root, f"{name}.migrations", "s1", version_table=f"alembic_version_{name}",
        imports="""
            from alembic import op

            from meshkit.basis.saga import migration as sagas
        """,
        upgrade='sagas.upgrade(op, "orders")',
        downgrade='sagas.downgrade(op, "orders")',
    )
    sys.path.insert(0, str(root))
    yield package
    sys.path.remove(str(root))


async def test_the_service_migration_creates_the_saga_tables(engine, saga_migrations):
    assert await migrate(engine, saga_migrations) == "s1"
    async with engine.connect() as conn:
        names = set(await conn.run_sync(lambda c: inspect(c).get_table_names()))
        indexes = await conn.run_sync(lambda c: inspect(c).get_indexes("orders_saga_instances"))
    assert {"orders_saga_instances", "orders_saga_steps"} <= names
    assert any(i["column_names"] == ["status", "lease_until"] for i in indexes)
    orch = SagaOrchestrator(engine, prefix="orders", owner="m", sagas=[Saga("one", [Step("only", _noop)])])
    assert (await orch.run(await orch.begin("one", {"x": 1}))).status == COMPLETED
    async with engine.connect() as conn:
        assert (await conn.execute(text("SELECT count(*) FROM orders_saga_steps"))).scalar_one() == 4


async def test_use_sagas_runs_the_worker_with_the_service(engine, participants, tmp_path):
    import uuid

    from meshkit.basis.saga import use_sagas
    from meshkit.basis.service import Service
    from meshkit.basis.settings import ServiceSettings
    from meshkit.basis.testing import running

    await prepare(engine, participants, prefix="shopsvc")
    settings = ServiceSettings(
        name="shopsvc", instance_id=f"shopsvc-{uuid.uuid4().hex[:6]}",
        registry_url=f"memory://sagas-{uuid.uuid4().hex[:8]}", drain_timeout=1.0,
    )
    service = Service(settings)
    sagas = use_sagas(service, engine, [checkout_saga(participants)], poll=0.2)
    assert service.state["sagas"] is sagas and sagas.owner == settings.instance_id
    async with running(service):
        ids = [await sagas.begin("checkout", order(decline=i == 1)) for i in range(3)]
        states = [await sagas.wait(i, timeout=15) for i in ids]
    assert [s.status for s in states] == [COMPLETED, COMPENSATED, COMPLETED]
    assert sagas._worker is None  # stopped with the service
