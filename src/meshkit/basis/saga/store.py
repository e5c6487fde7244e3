"""Saga state in the service's database: instances, the step log, leases with fencing.

Every write an orchestrator makes while driving a saga is *fenced*: the
``UPDATE`` matches only while the row still names this orchestrator as lease
owner with the same ``fence`` and the expected status. A driver that lost its
lease (it stalled past the ttl and another orchestrator claimed the saga)
therefore cannot write anything any more — :class:`LeaseLost` — and statuses
only move forward (running → compensating → compensated | failed; running →
completed), so a saga ends exactly once.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncEngine

from meshkit.basis.errors import Conflict
from meshkit.basis.saga.tables import saga_tables
from meshkit.basis.storage import Transaction, session_factory, transaction

RUNNING, COMPENSATING = "running", "compensating"
COMPLETED, COMPENSATED, FAILED = "completed", "compensated", "failed"
ACTIVE = (RUNNING, COMPENSATING)
#: Ends: ``completed`` and ``compensated`` are the two outcomes; ``failed`` means a
#: compensation gave up (only with a finite ``compensation_attempts``) and needs an operator.
TERMINAL = (COMPLETED, COMPENSATED, FAILED)


class LeaseLost(Conflict):
    """Another orchestrator has taken this saga over; this one must stop driving it."""

    reason = "saga_lease_lost"


@dataclass(frozen=True, slots=True)
class SagaState:
    """One saga instance as stored."""

    id: str
    name: str
    status: str
    step: int
    data: dict[str, Any]
    error: str | None
    lease_owner: str | None
    lease_until: float
    fence: int
    created_at: float
    updated_at: float

    @property
    def done(self) -> bool:
        """Whether the saga has reached an end."""
        return self.status in TERMINAL


@dataclass(frozen=True, slots=True)
class LogEntry:
    """One row of the step log: ``phase`` action|compensation|saga, ``event`` started|succeeded|failed|..."""

    step: str
    phase: str
    event: str
    attempt: int = 0
    detail: str | None = None
    owner: str | None = None
    at: float = 0.0
    seq: int = 0


class SagaStore:
    """The saga tables of ``prefix`` behind ``engine``."""

    def __init__(self, engine: AsyncEngine, *, prefix: str) -> None:
        self.engine = engine
        self.tables = saga_tables(prefix)
        self.sessions = session_factory(engine)

    async def create(
        self, saga_id: str, name: str, data: Mapping[str, Any], *, session: Transaction | None = None
    ) -> bool:
        """Insert a new running saga; ``False`` (and no change) when ``saga_id`` exists already."""
        now = time.time()
        values = {
            "id": saga_id, "name": name, "status": RUNNING, "step": 0, "data": _dumps(data), "error": None,
            "lease_owner": None, "lease_until": 0.0, "fence": 0, "created_at": now, "updated_at": now,
        }
        if session is not None:
            return await self._create(session, values)
        async with transaction(self.sessions) as s:
            return await self._create(s, values)

    async def _create(self, session: Transaction, values: dict[str, Any]) -> bool:
        dialect = postgresql if session.bind.dialect.name == "postgresql" else sqlite
        result = await session.execute(dialect.insert(self.tables.instances).values(**values).on_conflict_do_nothing())
        created = result.rowcount == 1  # type: ignore[attr-defined]
        if created:
            await self._log(session, values["id"], [LogEntry("", "saga", "started")], None)
        return created

    async def get(self, saga_id: str) -> SagaState | None:
        """The saga ``saga_id``, or ``None``."""
        t = self.tables.instances
        async with transaction(self.sessions, write=False) as s:
            row = (await s.execute(select(t).where(t.c.id == saga_id))).mappings().first()
        return _state(row) if row is not None else None

    async def claim(self, saga_id: str, owner: str, ttl: float) -> SagaState | None:
        """Take the lease of an unfinished saga (free, expired, or already ours); bumps the fence."""
        t = self.tables.instances
        now = time.time()
        async with transaction(self.sessions) as s:
            result = await s.execute(
                update(t)
                .where(
                    t.c.id == saga_id,
                    t.c.status.in_(ACTIVE),
                    or_(t.c.lease_owner.is_(None), t.c.lease_owner == owner, t.c.lease_until < now),
                )
                .values(lease_owner=owner, lease_until=now + ttl, fence=t.c.fence + 1)
            )
            if result.rowcount != 1:  # type: ignore[attr-defined]
                return None
            row = (await s.execute(select(t).where(t.c.id == saga_id))).mappings().one()
        return _state(row)

    async def claimable(self, owner: str, limit: int) -> list[str]:
        """Ids of unfinished sagas whose lease is free, expired or ours, oldest change first."""
        t = self.tables.instances
        now = time.time()
        query = (
            select(t.c.id)
            .where(
                t.c.status.in_(ACTIVE),
                or_(t.c.lease_owner.is_(None), t.c.lease_owner == owner, t.c.lease_until < now),
            )
            .order_by(t.c.updated_at)
            .limit(limit)
        )
        async with transaction(self.sessions, write=False) as s:
            return list((await s.execute(query)).scalars().all())

    async def transition(
        self,
        state: SagaState,
        *,
        ttl: float,
        status: str | None = None,
        step: int | None = None,
        data: Mapping[str, Any] | None = None,
        error: str | None = None,
        log: Iterable[LogEntry] = (),
    ) -> SagaState:
        """Write the next state and its log rows in one fenced transaction; renews the lease.

        Raises :class:`LeaseLost` when ``state``'s owner/fence/status no longer hold.
        """
        t = self.tables.instances
        now = time.time()
        values: dict[str, Any] = {"lease_until": now + ttl, "updated_at": now}
        if status is not None:
            values["status"] = status
        if step is not None:
            values["step"] = step
        if data is not None:
            values["data"] = _dumps(data)
        if error is not None:
            values["error"] = error
        async with transaction(self.sessions) as s:
            result = await s.execute(
                update(t)
                .where(
                    t.c.id == state.id, t.c.lease_owner == state.lease_owner,
                    t.c.fence == state.fence, t.c.status == state.status,
                )
                .values(**values)
            )
            if result.rowcount != 1:  # type: ignore[attr-defined]
                raise LeaseLost(
                    f"saga {state.id!r} was taken over by another orchestrator; this one stops driving it",
                    details={"saga_id": state.id, "owner": state.lease_owner, "fence": state.fence},
                )
            await self._log(s, state.id, log, state.lease_owner)
        return SagaState(
            id=state.id, name=state.name, status=values.get("status", state.status),
            step=values.get("step", state.step), data=dict(data) if data is not None else state.data,
            error=error if error is not None else state.error, lease_owner=state.lease_owner,
            lease_until=values["lease_until"], fence=state.fence, created_at=state.created_at, updated_at=now,
        )

    async def renew(self, state: SagaState, ttl: float) -> bool:
        """Extend the lease while owner and fence still hold (whatever the status); ``False`` when lost."""
        t = self.tables.instances
        async with transaction(self.sessions) as s:
            result = await s.execute(
                update(t)
                .where(t.c.id == state.id, t.c.lease_owner == state.lease_owner, t.c.fence == state.fence)
                .values(lease_until=time.time() + ttl)
            )
        return result.rowcount == 1  # type: ignore[attr-defined]

    async def release(self, state: SagaState) -> None:
        """Give the lease up (a clean stop): another orchestrator may claim the saga at once."""
        t = self.tables.instances
        async with transaction(self.sessions) as s:
            await s.execute(
                update(t)
                .where(t.c.id == state.id, t.c.lease_owner == state.lease_owner, t.c.fence == state.fence)
                .values(lease_until=0.0)
            )

    async def attempts(self, saga_id: str) -> dict[tuple[str, str], int]:
        """``{(step, phase): number of attempts started}`` from the log."""
        t = self.tables.steps
        query = (
            select(t.c.step, t.c.phase, func.count())
            .where(t.c.saga_id == saga_id, t.c.event == "started", t.c.phase != "saga")
            .group_by(t.c.step, t.c.phase)
        )
        async with transaction(self.sessions, write=False) as s:
            rows = (await s.execute(query)).all()
        return {(step, phase): int(n) for step, phase, n in rows}

    async def history(self, saga_id: str) -> list[LogEntry]:
        """The saga's step log, in order."""
        t = self.tables.steps
        async with transaction(self.sessions, write=False) as s:
            rows = (await s.execute(select(t).where(t.c.saga_id == saga_id).order_by(t.c.seq))).mappings().all()
        return [
            LogEntry(r["step"], r["phase"], r["event"], r["attempt"], r["detail"], r["owner"], r["at"], r["seq"])
            for r in rows
        ]

    async def _log(self, session: Transaction, saga_id: str, entries: Iterable[LogEntry], owner: str | None) -> None:
        now = time.time()
        rows = [
            {"saga_id": saga_id, "step": e.step, "phase": e.phase, "event": e.event, "attempt": e.attempt,
             "detail": e.detail[:2000] if e.detail else None, "owner": owner, "at": now}
            for e in entries
        ]
        if rows:
            await session.execute(self.tables.steps.insert(), rows)


def _dumps(data: Mapping[str, Any]) -> str:
    return orjson.dumps(dict(data)).decode()


def _state(row: Mapping[str, Any]) -> SagaState:
    return SagaState(
        id=row["id"], name=row["name"], status=row["status"], step=row["step"], data=orjson.loads(row["data"]),
        error=row["error"], lease_owner=row["lease_owner"], lease_until=row["lease_until"], fence=row["fence"],
        created_at=row["created_at"], updated_at=row["updated_at"],
    )


__all__ = [
    "ACTIVE",
    "COMPENSATED",
    "COMPENSATING",
    "COMPLETED",
    "FAILED",
    "RUNNING",
    "TERMINAL",
    "LeaseLost",
    "LogEntry",
    "SagaState",
    "SagaStore",
]
