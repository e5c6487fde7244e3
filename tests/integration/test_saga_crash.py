"""A saga whose orchestrator is SIGKILLed at each point in turn, then restarted.

The orchestrator runs in a child process (``python -m meshkit.basis.saga.demo``)
that kills itself with SIGKILL at one probe point — before an action, after an
action but before its result is persisted, after persisting, after a failure,
before/after a compensation... A restarted orchestrator (the same owner at
once, or another owner once the lease has expired) finishes the saga. Every
run must end in exactly one outcome, with each participant's effect applied
exactly once (completed) or applied and compensated exactly once (compensated).
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time

import pytest

from meshkit.basis.saga import COMPENSATED, COMPLETED, SagaOrchestrator
from meshkit.basis.saga.demo import Participants, checkout_saga, prepare
from meshkit.basis.storage import create_engine

HAPPY = [f"{point}:{step}" for step in ("reserve", "charge", "confirm")
         for point in ("before_action", "after_action", "after_persist")]
CONFIRM_FAILS = ["after_failure:confirm"] + [
    f"{point}:{step}" for step in ("charge", "reserve")
    for point in ("before_compensation", "after_compensation", "after_compensation_persist")
]
DECLINED = ["after_failure:charge", "before_compensation:charge", "after_compensation_persist:charge"]
CASES = (
    [("happy", {}, p) for p in HAPPY]
    + [("confirm_fails", {"fail_confirm": True}, p) for p in CONFIRM_FAILS]
    + [("declined", {"decline": True}, p) for p in DECLINED]
)
LEASE_TTL = 0.8
#: On PostgreSQL the default run takes one point of each kind (the chaos run takes them all).
PG_CASES = [c for c in CASES if c[2] in (
    "after_action:charge", "after_persist:confirm", "after_failure:confirm",
    "after_compensation:charge", "before_compensation:reserve", "after_compensation_persist:charge",
)]


async def crash_child(db: str, participants: str, prefix: str, saga_id: str, crash: str) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "meshkit.basis.saga.demo", "--db", db, "--participants", participants,
        "--prefix", prefix, "--saga-id", saga_id, "--crash", crash, "--owner", "child",
        "--lease-ttl", str(LEASE_TTL),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    _out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == -signal.SIGKILL, f"child did not die at {crash}: rc={proc.returncode} {err.decode()[-800:]}"


async def run_case(db_url: str, prefix: str, tmp, index: int, scenario: str, data: dict, crash: str, limit) -> None:
    part_url = f"sqlite+aiosqlite:///{tmp}/participants-{index}.db"
    part_engine = create_engine(part_url)
    participants = Participants(part_engine)
    await participants.setup()
    saga_engine = create_engine(db_url)
    try:
        orch = SagaOrchestrator(
            saga_engine, prefix=prefix, sagas=[checkout_saga(participants)],
            # Every other case restarts under another owner, which must wait for the lease to lapse.
            owner="child" if index % 2 == 0 else "successor", lease_ttl=LEASE_TTL,
        )
        saga_id = await orch.begin("checkout", {"order_id": f"o-{index}", "amount": 100 + index, **data})
        async with limit:
            await crash_child(db_url, part_url, prefix, saga_id, crash)
        dead = await orch.get(saga_id)
        state = await orch.run(saga_id)
        if not state.done:
            assert orch.owner == "successor" and dead.lease_owner == "child", (crash, state)
            await asyncio.sleep(max(0.0, dead.lease_until - time.time()) + 0.05)
            state = await orch.run(saga_id)
        expected = COMPLETED if scenario == "happy" else COMPENSATED
        assert state.status == expected, (scenario, crash, state)
        effects = await participants.effects(saga_id)
        for name, e in effects.items():
            assert e["apply"] <= 1 and e["undo"] <= 1, (crash, name, e)
        if expected == COMPLETED:
            assert all((e["apply"], e["undo"]) == (1, 0) for e in effects.values()), (crash, effects)
        else:
            assert effects["inventory"]["apply"] == effects["inventory"]["undo"] == 1, (crash, effects)
            assert effects["payments"]["undo"] == 1, (crash, effects)
            assert effects["payments"]["apply"] == (0 if scenario == "declined" else 1), (crash, effects)
            assert effects["orders"]["apply"] == 0, (crash, effects)
        if crash.startswith("after_action:"):
            # The action ran, its result was lost with the child: the restart ran it again, without a second effect.
            owner = {"reserve": "inventory", "charge": "payments", "confirm": "orders"}[crash.split(":")[1]]
            assert effects[owner]["calls"] == 2 and effects[owner]["apply"] == 1, (crash, effects)
        history = await orch.history(saga_id)
        ends = [e.event for e in history if e.phase == "saga" and e.event in (COMPLETED, COMPENSATED)]
        assert ends == [expected], (crash, ends)
        # The child drove the saga up to the crash point; the end may be its own (a crash after persisting it).
        assert "child" in {e.owner for e in history}
    finally:
        await saga_engine.dispose()
        await part_engine.dispose()


async def test_sigkill_at_every_point_then_restart_ends_once_with_exact_effects(database_url, tmp_path):
    cases = CASES if database_url.startswith("sqlite") else PG_CASES
    await crash_matrix(database_url, tmp_path, cases)


@pytest.mark.chaos
async def test_every_point_on_postgresql(postgres_url, tmp_path):
    await crash_matrix(postgres_url, tmp_path, CASES)


async def crash_matrix(database_url: str, tmp_path, cases) -> None:
    """Run every (scenario, data, crash point) of ``cases``, three children at a time."""
    prefix = f"crash_{os.urandom(3).hex()}"  # PostgreSQL: one database for the session, tables of our own
    engine = create_engine(database_url)
    try:
        await prepare(engine, Participants(engine), prefix=prefix)
    finally:
        await engine.dispose()
    limit = asyncio.Semaphore(3)
    await asyncio.gather(*(
        run_case(database_url, prefix, tmp_path, i, scenario, data, crash, limit)
        for i, (scenario, data, crash) in enumerate(cases)
    ))
