"""The worked example of ``docs/sagas.md``: reserve stock → charge → confirm, undone on failure.

Three fake participants (inventory, payments, orders) live in one SQLite file
and keep the participant contract of :mod:`.definition`: each effect is one row
keyed by the step's idempotency key, so a repeated call changes nothing; a
compensation leaves an ``undo`` row even when the action never landed, and an
action that finds it refuses to apply (a late call cannot resurrect a
cancelled step). Every call is also counted, so tests can show that calls were
repeated (crashes, retries) while effects happened once.

Run it: ``python -m meshkit.basis.saga.demo`` (a happy order, a declined card,
a failed confirmation). Tests also run it as a child process that kills itself
at a chosen point (``--crash before_action:charge``) to prove recovery.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
import tempfile
from typing import Any

from sqlalchemy import Column, Float, Integer, MetaData, String, Table, func, select
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncEngine

from meshkit.basis.saga.definition import Abort, Saga, Step, StepContext
from meshkit.basis.saga.orchestrator import SagaOrchestrator
from meshkit.basis.saga.tables import saga_tables
from meshkit.basis.storage import create_engine, session_factory, transaction

PREFIX = "shop"
PARTICIPANTS = ("inventory", "payments", "orders")

_md = MetaData()
effects = Table(
    "demo_effects", _md,
    Column("participant", String(20), primary_key=True),
    Column("key", String(200), primary_key=True),
    Column("kind", String(8), primary_key=True),  # "apply" or "undo"
    Column("at", Float, nullable=False, server_default="0"),
)
calls = Table(
    "demo_calls", _md,
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("participant", String(20), nullable=False),
    Column("key", String(200), nullable=False),
    Column("kind", String(8), nullable=False),
)


class Participants:
    """Inventory, payments and orders, faked in the SQLite database behind ``engine``."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.sessions = session_factory(engine)

    async def setup(self) -> None:
        """Create the participants' tables (idempotent)."""
        async with self.engine.begin() as conn:
            await conn.run_sync(_md.create_all)

    async def _effect(self, participant: str, ctx: StepContext, kind: str) -> None:
        key = ctx.idempotency_key
        async with transaction(self.sessions) as s:
            await s.execute(calls.insert().values(participant=participant, key=key, kind=kind))
            if kind == "apply":
                undone = (await s.execute(select(effects.c.kind).where(
                    effects.c.participant == participant, effects.c.key == key, effects.c.kind == "undo",
                ))).first()
                if undone is not None:
                    raise Abort(f"{participant}: {key} was cancelled before it was applied")
            await s.execute(sqlite_insert(effects).values(
                participant=participant, key=key, kind=kind, at=asyncio.get_running_loop().time(),
            ).on_conflict_do_nothing())

    async def reserve(self, ctx: StepContext) -> dict[str, Any]:
        """Inventory: hold ``qty`` of ``sku`` for the order."""
        await self._effect("inventory", ctx, "apply")
        return {"reservation_id": f"res-{ctx.saga_id}"}

    async def release(self, ctx: StepContext) -> None:
        """Inventory: give the held stock back (a no-op marker if nothing was held)."""
        await self._effect("inventory", ctx, "undo")

    async def charge(self, ctx: StepContext) -> dict[str, Any]:
        """Payments: take ``amount``. ``decline`` in the data refuses for good; ``flaky`` fails N attempts."""
        if ctx.get("decline"):
            await self._call_only("payments", ctx)
            raise Abort("card declined")
        if ctx.attempt <= int(ctx.get("flaky", 0)):
            await self._call_only("payments", ctx)
            raise ConnectionError("payments unreachable (simulated)")
        if ctx.get("slow"):
            await asyncio.sleep(float(ctx["slow"]))
        await self._effect("payments", ctx, "apply")
        return {"charge_id": f"ch-{ctx.saga_id}"}

    async def refund(self, ctx: StepContext) -> None:
        """Payments: give the money back (a no-op marker if nothing was taken)."""
        await self._effect("payments", ctx, "undo")

    async def confirm(self, ctx: StepContext) -> dict[str, Any]:
        """Orders: mark the order confirmed. ``fail_confirm`` in the data refuses for good."""
        if ctx.get("fail_confirm"):
            await self._call_only("orders", ctx)
            raise Abort("order can no longer be confirmed")
        await self._effect("orders", ctx, "apply")
        return {"confirmed": True}

    async def _call_only(self, participant: str, ctx: StepContext) -> None:
        async with transaction(self.sessions) as s:
            await s.execute(calls.insert().values(participant=participant, key=ctx.idempotency_key, kind="apply"))

    async def effects(self, saga_id: str) -> dict[str, dict[str, int]]:
        """``{participant: {"apply": n, "undo": n, "calls": n}}`` for one saga."""
        out = {p: {"apply": 0, "undo": 0, "calls": 0} for p in PARTICIPANTS}
        prefix = f"{saga_id}:%"
        async with transaction(self.sessions, write=False) as s:
            for p, kind, n in (await s.execute(
                select(effects.c.participant, effects.c.kind, func.count())
                .where(effects.c.key.like(prefix)).group_by(effects.c.participant, effects.c.kind)
            )).all():
                out[p][kind] = int(n)
            for p, n in (await s.execute(
                select(calls.c.participant, func.count()).where(calls.c.key.like(prefix)).group_by(calls.c.participant)
            )).all():
                out[p]["calls"] = int(n)
        return out


def checkout_saga(p: Participants, *, timeout: float = 2.0, retries: int = 3) -> Saga:
    """reserve (undo: release) → charge (undo: refund) → confirm."""
    return Saga("checkout", [
        Step("reserve", p.reserve, p.release, timeout=timeout, retries=retries),
        Step("charge", p.charge, p.refund, timeout=timeout, retries=retries),
        Step("confirm", p.confirm, timeout=timeout, retries=retries),
    ])


async def prepare(saga_engine: AsyncEngine, participants: Participants, *, prefix: str = PREFIX) -> None:
    """Create the saga tables (a service would use :mod:`.migration`) and the participants' tables."""
    async with saga_engine.begin() as conn:
        await conn.run_sync(saga_tables(prefix).metadata.create_all)
    await participants.setup()


def crash_probe(point: str) -> Any:
    """A probe that SIGKILLs this process at ``"<probe point>:<step>"`` (the test's crash)."""
    where, _, step_name = point.partition(":")

    def probe(at: str, _saga_id: str, step: str) -> None:
        if at == where and step == step_name:
            os.kill(os.getpid(), signal.SIGKILL)

    return probe


async def _child(args: argparse.Namespace) -> int:
    saga_engine = create_engine(args.db)
    part_engine = create_engine(args.participants) if args.participants != args.db else saga_engine
    participants = Participants(part_engine)
    orchestrator = SagaOrchestrator(
        saga_engine, prefix=args.prefix, sagas=[checkout_saga(participants, timeout=args.timeout)], owner=args.owner,
        lease_ttl=args.lease_ttl, probe=crash_probe(args.crash) if args.crash else None,
    )
    try:
        if args.saga_id:
            state = await orchestrator.run(args.saga_id)
            print(state.status, flush=True)
        else:
            print(await orchestrator.resume(), flush=True)
    finally:
        await saga_engine.dispose()
        if part_engine is not saga_engine:
            await part_engine.dispose()
    return 0


async def _tour() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        engine = create_engine(f"sqlite+aiosqlite:///{tmp}/shop.db")
        participants = Participants(engine)
        await prepare(engine, participants)
        sagas = SagaOrchestrator(engine, prefix=PREFIX, sagas=[checkout_saga(participants)], owner="demo")
        cases = {
            "happy": {"order_id": "o-1", "amount": 1500},
            "flaky payments": {"order_id": "o-2", "amount": 900, "flaky": 2},
            "card declined": {"order_id": "o-3", "amount": 100, "decline": True},
            "confirm fails": {"order_id": "o-4", "amount": 700, "fail_confirm": True},
        }
        for label, data in cases.items():
            saga_id = await sagas.begin("checkout", data)
            state = await sagas.run(saga_id)
            print(f"{label:15} -> {state.status:12} effects={await participants.effects(saga_id)}")
            for entry in await sagas.history(saga_id):
                print(f"    {entry.phase:12} {entry.step:8} {entry.event:12} attempt={entry.attempt} {entry.detail or ''}")
        await engine.dispose()
    return 0


def main(argv: list[str] | None = None) -> int:
    """Without arguments: the tour. With ``--db``: drive one saga (or resume all) as a child process."""
    parser = argparse.ArgumentParser(prog="python -m meshkit.basis.saga.demo")
    parser.add_argument("--db", help="saga database URL")
    parser.add_argument("--participants", help="participants' SQLite URL (default: --db)")
    parser.add_argument("--prefix", default=PREFIX, help="saga table prefix")
    parser.add_argument("--saga-id", help="drive this saga (default: resume every unfinished one)")
    parser.add_argument("--owner", default=None)
    parser.add_argument("--crash", help="SIGKILL this process at <point>:<step>, e.g. after_action:charge")
    parser.add_argument("--timeout", type=float, default=2.0)
    parser.add_argument("--lease-ttl", type=float, default=5.0)
    args = parser.parse_args(argv)
    if not args.db:
        return asyncio.run(_tour())
    args.participants = args.participants or args.db
    return asyncio.run(_child(args))


if __name__ == "__main__":
    sys.exit(main())
