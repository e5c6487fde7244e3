"""Saga steps that fail with what is not an ``Exception``, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import os

import pytest

from meshkit.basis.client.retry import Backoff
from meshkit.basis.saga import COMPENSATED, COMPLETED, Abort, Saga, SagaOrchestrator, Step, StepContext
from meshkit.basis.saga.demo import PREFIX, Participants, prepare
from meshkit.basis.storage import create_engine
from meshkit.basis.storage.testing import scratch_engine

FAST = Backoff(base=0.01, cap=0.02)


class Bail(BaseException):
    """A participant client's own BaseException (not an Exception)."""


@pytest.fixture
async def engine(database_url, tmp_path):
    async with scratch_engine(database_url) as engine:
        participants = Participants(create_engine(f"sqlite+aiosqlite:///{tmp_path}/participants.db"))
        await participants.setup()
        await prepare(engine, participants)
        yield engine
        await participants.engine.dispose()


def order() -> dict:
    return {"order_id": f"o-{os.urandom(3).hex()}"}


async def test_an_action_raising_its_own_cancelled_error_or_base_exception_is_a_failed_attempt(engine):
    # Before: it went out of the driver: run() raised it to its caller (a CancelledError looked
    # like the caller being cancelled), and the saga waited for the worker to take it up again.
    tries: list[int] = []

    async def flaky(ctx: StepContext) -> dict:
        tries.append(ctx.attempt)
        if ctx.attempt == 1:
            raise asyncio.CancelledError()  # e.g. a call it awaited was cancelled by someone else
        if ctx.attempt == 2:
            raise Bail("not an Exception")
        return {"done": True}

    saga = Saga("checkout", [Step("only", flaky, retries=2, backoff=FAST)])
    orch = SagaOrchestrator(engine, prefix=PREFIX, sagas=[saga], owner="t-base")
    saga_id = await orch.begin("checkout", order())
    state = await orch.run(saga_id)
    assert state.status == COMPLETED and state.data["done"] and tries == [1, 2, 3]
    failed = [e.detail for e in await orch.history(saga_id) if e.event == "failed"]
    assert [d.split(":")[0] for d in failed] == ["CancelledError", "Bail"]


async def test_a_compensation_raising_a_base_exception_is_retried_with_backoff(engine):
    # Before: the driver crashed on every attempt and the worker took the saga up again at once,
    # without backoff, for as long as the compensation kept raising.
    undo: list[int] = []

    async def take(ctx: StepContext) -> None:
        return None

    async def give_back(ctx: StepContext) -> None:
        undo.append(ctx.attempt)
        if ctx.attempt < 3:
            raise Bail("inventory client gave up")

    async def decline(ctx: StepContext) -> None:
        raise Abort("declined")

    saga = Saga("checkout", [Step("take", take, give_back, backoff=FAST), Step("pay", decline)])
    orch = SagaOrchestrator(engine, prefix=PREFIX, sagas=[saga], owner="t-comp")
    saga_id = await orch.begin("checkout", order())
    state = await orch.run(saga_id)
    assert state.status == COMPENSATED and undo == [1, 2, 3]
