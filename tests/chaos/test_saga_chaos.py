"""Sagas under random SIGKILLs: two orchestrator processes at a time, killed at random moments, many rounds.

Forty checkout sagas (happy, flaky payments, declined cards, failed
confirmations) are driven by pairs of child orchestrators with fresh owner ids
each round, so every round both races for leases and takes over sagas that the
killed round left behind (after their lease lapses). The kills land anywhere:
during imports, inside a participant's transaction, between an action and its
persisted result, during compensation. Afterwards one last orchestrator
finishes what is left, and every saga must have exactly one end with its
participants' effects applied once (completed) or applied and undone once
(compensated).

Run with ``make chaos`` (``pytest -m chaos``).
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import sys
import time

import pytest

from meshkit.basis.saga import COMPENSATED, COMPLETED, SagaOrchestrator
from meshkit.basis.saga.demo import Participants, checkout_saga, prepare
from meshkit.basis.storage import create_engine

pytestmark = pytest.mark.chaos

SAGAS = 40
ROUNDS = 12
LEASE_TTL = 0.8
SCENARIOS = [
    ("happy", {"slow": 0.02}),
    ("flaky", {"flaky": 1, "slow": 0.02}),
    ("declined", {"decline": True}),
    ("confirm_fails", {"fail_confirm": True, "slow": 0.02}),
]


async def child(db: str, participants: str, prefix: str, owner: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "meshkit.basis.saga.demo", "--db", db, "--participants", participants,
        "--prefix", prefix, "--owner", owner, "--lease-ttl", str(LEASE_TTL),
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )


async def test_random_sigkills_of_competing_orchestrators(database_url, tmp_path):
    rng = random.Random(int.from_bytes(os.urandom(4), "big"))
    prefix = f"chaos_{os.urandom(3).hex()}"
    part_url = f"sqlite+aiosqlite:///{tmp_path}/participants.db"
    saga_engine, part_engine = create_engine(database_url), create_engine(part_url)
    participants = Participants(part_engine)
    await prepare(saga_engine, participants, prefix=prefix)
    orch = SagaOrchestrator(saga_engine, prefix=prefix, sagas=[checkout_saga(participants)], owner="final",
                            lease_ttl=LEASE_TTL)
    try:
        kinds = {}
        for i in range(SAGAS):
            scenario, data = SCENARIOS[i % len(SCENARIOS)]
            kinds[await orch.begin("checkout", {"order_id": f"o-{i}", **data})] = scenario

        kills = 0
        for round_ in range(ROUNDS):
            procs = [await child(database_url, part_url, prefix, f"r{round_}{side}") for side in "ab"]
            await asyncio.sleep(rng.uniform(0.3, 1.5))
            for proc in procs:
                if proc.returncode is None:
                    proc.send_signal(signal.SIGKILL)
                    kills += 1
            for proc in procs:
                await proc.wait()

        done_by_children = sum([(await orch.get(sid)).done for sid in kinds])
        deadline = time.monotonic() + 60
        while True:
            states = [await orch.get(sid) for sid in kinds]
            if all(s.done for s in states):
                break
            assert time.monotonic() < deadline, [s for s in states if not s.done]
            await orch.resume()
            await asyncio.sleep(0.2)  # sagas still leased by a killed child: wait for the lease to lapse

        taken_over = 0
        for state in states:
            scenario = kinds[state.id]
            expected = COMPLETED if scenario in ("happy", "flaky") else COMPENSATED
            assert state.status == expected, (scenario, state)
            effects = await participants.effects(state.id)
            for name, e in effects.items():
                assert e["apply"] <= 1 and e["undo"] <= 1, (state.id, name, e)
                if expected == COMPLETED:
                    assert (e["apply"], e["undo"]) == (1, 0), (state.id, name, e)
                elif e["apply"]:
                    assert e["undo"] == 1, (state.id, name, e)
            history = await orch.history(state.id)
            ends = [e.event for e in history if e.phase == "saga" and e.event not in ("started", "compensating")]
            assert ends == [expected], (state.id, ends)
            drivers = {e.owner for e in history if e.owner}
            taken_over += len(drivers) > 1
        assert kills > 0
        print(f"\n{SAGAS} sagas, {ROUNDS} rounds, {kills} SIGKILLs, {done_by_children} finished by the children, "
              f"{taken_over} driven by more than one orchestrator: every saga ended once, effects exact")
    finally:
        await saga_engine.dispose()
        await part_engine.dispose()
