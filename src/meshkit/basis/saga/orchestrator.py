"""The saga orchestrator: drives sagas step by step, persisting every transition.

::

    sagas = SagaOrchestrator(engine, prefix="shop", sagas=[checkout], owner=settings.instance_id)
    saga_id = await sagas.begin("checkout", {"order_id": "o-1", "sku": "A", "qty": 2, "amount": 1500})
    state = await sagas.run(saga_id)           # drive it here, now; or let the worker do it:
    await sagas.start()                        # claims and resumes unfinished sagas (after a crash too)

How a saga moves (each arrow is one committed, fenced write; see :mod:`.store`):

- running, step *i*: log "action started" → call the action (timeout) →
  merge its result into the data, step *i+1* (the last step also sets
  ``completed``). A failure is logged and retried with backoff up to
  ``retries``; a crash mid-attempt counts as an attempt, so a step that keeps
  killing its orchestrator still ends. When attempts run out, or on
  :class:`~.definition.Abort`, the saga turns ``compensating`` at step *i*.
- compensating, step *j*: every step whose action *started* (it may have taken
  effect even if it failed or timed out) is compensated, last first; the
  compensation is retried until it succeeds; after the first step: ``compensated``.

A restarted orchestrator (same owner: at once; another owner: when the lease
expires) re-runs the step that was in flight — hence the idempotency contract
in :mod:`.definition`. While it drives a saga the orchestrator renews its
lease; a driver that stalls past the ttl loses the saga at its next write.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from meshkit.basis.errors import ConfigError, GatewayTimeout, NotFound
from meshkit.basis.saga.definition import Saga, Step, StepContext, retryable
from meshkit.basis.saga.store import (
    COMPENSATED,
    COMPENSATING,
    COMPLETED,
    FAILED,
    RUNNING,
    LeaseLost,
    LogEntry,
    SagaState,
    SagaStore,
)

logger = logging.getLogger("meshkit.saga")

#: ``probe(point, saga_id, step)``: called at every point where a crash matters (tests kill the process there).
Probe = Callable[[str, str, str], Awaitable[None] | None]
PROBE_POINTS = (
    "before_action", "after_action", "after_persist", "after_failure",
    "before_compensation", "after_compensation", "after_compensation_persist",
)


class SagaOrchestrator:
    """Runs the sagas in ``sagas`` whose state lives in ``<prefix>_saga_*`` tables.

    ``owner`` names this orchestrator in leases (the instance id: unique per
    live process). ``lease_ttl``: how long a silent orchestrator keeps its
    sagas. ``concurrency``: sagas driven at once by the worker.
    """

    def __init__(
        self,
        engine: AsyncEngine,
        *,
        prefix: str,
        sagas: Iterable[Saga],
        owner: str | None = None,
        lease_ttl: float = 15.0,
        poll: float = 1.0,
        concurrency: int = 16,
        probe: Probe | None = None,
    ) -> None:
        self.store = SagaStore(engine, prefix=prefix)
        self.sagas = {s.name: s for s in sagas}
        self.owner = owner or f"{os.uname().nodename}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.lease_ttl = lease_ttl
        self.poll = poll
        self.concurrency = concurrency
        self.probe = probe
        self._driving: dict[str, asyncio.Task[SagaState | None]] = {}
        self._worker: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()

    # -- public API -----------------------------------------------------------

    async def begin(
        self, name: str, data: Mapping[str, Any], *, saga_id: str | None = None, session: AsyncSession | None = None
    ) -> str:
        """Record a new saga (not yet run) and return its id; the same ``saga_id`` twice starts it once.

        ``session``: create it inside the caller's transaction (the saga exists
        if and only if the caller's change commits). The worker picks it up, or
        call :meth:`run`.
        """
        if name not in self.sagas:
            raise ConfigError(f"unknown saga {name!r}: register it with SagaOrchestrator(sagas=[...])")
        saga_id = saga_id or uuid.uuid4().hex
        await self.store.create(saga_id, name, data, session=session)
        self._wake.set()
        return saga_id

    async def run(self, saga_id: str) -> SagaState:
        """Drive ``saga_id`` to its end here and now, if no other orchestrator holds it; its state after."""
        task = self._driving.get(saga_id) or self._spawn(saga_id)
        await asyncio.shield(task)
        return await self.get(saga_id)

    async def get(self, saga_id: str) -> SagaState:
        """The stored state of ``saga_id``; :class:`NotFound` if there is none."""
        state = await self.store.get(saga_id)
        if state is None:
            raise NotFound(f"no saga {saga_id!r}", details={"saga_id": saga_id})
        return state

    async def wait(self, saga_id: str, timeout: float = 30.0, interval: float = 0.05) -> SagaState:
        """Poll until ``saga_id`` has ended; :class:`GatewayTimeout` after ``timeout`` seconds."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            state = await self.get(saga_id)
            if state.done:
                return state
            if loop.time() > deadline:
                raise GatewayTimeout(
                    f"saga {saga_id!r} is still {state.status} at step {state.step} after {timeout:g}s",
                    details={"saga_id": saga_id, "status": state.status, "step": state.step},
                )
            await asyncio.sleep(interval)

    async def history(self, saga_id: str) -> list[LogEntry]:
        """The step log of ``saga_id``."""
        return await self.store.history(saga_id)

    async def resume(self) -> int:
        """Claim every unfinished saga that is free, expired or ours and drive them all; how many were claimed."""
        count = 0
        while True:
            ids = [i for i in await self.store.claimable(self.owner, self.concurrency) if i not in self._driving]
            if not ids:
                return count
            results = await asyncio.gather(*(self._spawn(i) for i in ids))
            claimed = sum(1 for r in results if r is not None)
            count += claimed
            if not claimed:
                return count

    async def start(self) -> None:
        """Run the worker: it claims unfinished sagas (new, or left by a dead orchestrator) and drives them."""
        if self._worker is None:
            self._worker = asyncio.create_task(self._work(), name=f"meshkit-saga-worker-{self.owner}")

    async def stop(self, timeout: float = 10.0) -> None:
        """Stop claiming; let sagas in flight finish for ``timeout`` s, then cancel them (their leases lapse)."""
        worker, self._worker = self._worker, None
        if worker is not None:
            worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await worker
        tasks = list(self._driving.values())
        if tasks:
            _done, pending = await asyncio.wait(tasks, timeout=timeout)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)

    # -- driving --------------------------------------------------------------

    async def _work(self) -> None:
        while True:
            try:
                room = self.concurrency - len(self._driving)
                if room > 0:
                    for saga_id in await self.store.claimable(self.owner, room + len(self._driving)):
                        if saga_id not in self._driving and len(self._driving) < self.concurrency:
                            self._spawn(saga_id)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the database is away: try again next round
                logger.warning("saga worker %s: polling failed: %s", self.owner, exc)
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.poll)

    def _spawn(self, saga_id: str) -> asyncio.Task[SagaState | None]:
        # One task per saga in this process: run(), resume() and the worker share it.
        task = asyncio.create_task(self._claim_and_drive(saga_id), name=f"meshkit-saga-{saga_id}")
        self._driving[saga_id] = task

        def done(t: asyncio.Task[SagaState | None]) -> None:
            if self._driving.get(saga_id) is t:
                del self._driving[saga_id]
            self._wake.set()

        task.add_done_callback(done)
        return task

    async def _claim_and_drive(self, saga_id: str) -> SagaState | None:
        try:
            state = await self.store.claim(saga_id, self.owner, self.lease_ttl)
            if state is None:
                return None
            saga = self.sagas.get(state.name)
            if saga is None:
                # Not ours to run (another service version knows it): let it go at once.
                logger.warning("saga %s: no definition for %r in %s", saga_id, state.name, self.owner)
                await self.store.release(state)
                return None
            return await self._drive_leased(saga, state)
        except LeaseLost as exc:
            logger.warning("saga %s: %s", saga_id, exc.message)
            return None

    async def _drive_leased(self, saga: Saga, state: SagaState) -> SagaState:
        # Keep the lease fresh while a long step runs; a lost lease stops the drive.
        holder = _Holder(state)
        drive = asyncio.create_task(self._drive(saga, holder))
        renew = asyncio.create_task(self._renew(holder, drive))
        try:
            return await drive
        except asyncio.CancelledError:
            if holder.lost and not _cancelling():
                raise LeaseLost(f"saga {state.id!r}: lease lost while a step was running") from None
            drive.cancel()
            raise
        finally:
            renew.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await renew

    async def _renew(self, holder: _Holder, drive: asyncio.Task[SagaState]) -> None:
        while True:
            await asyncio.sleep(self.lease_ttl / 3)
            try:
                kept = await self.store.renew(holder.state, self.lease_ttl)
            except Exception as exc:  # transient: the next renewal or write will tell
                logger.warning("saga %s: lease renewal failed: %s", holder.state.id, exc)
                continue
            if not kept:
                holder.lost = True
                drive.cancel()
                return

    async def _drive(self, saga: Saga, holder: _Holder) -> SagaState:
        attempts = await self.store.attempts(holder.state.id)
        compensation_tries: dict[str, int] = {}
        while True:
            state = holder.state
            if state.done:
                return state
            if state.status == RUNNING:
                await self._forward(saga, holder, attempts)
            else:
                await self._backward(saga, holder, attempts, compensation_tries)

    async def _forward(self, saga: Saga, holder: _Holder, attempts: dict[tuple[str, str], int]) -> None:
        state = holder.state
        if state.step >= len(saga.steps):  # defensive: finished steps but no end recorded
            holder.state = await self._write(holder, status=COMPLETED)
            return
        step = saga.steps[state.step]
        key = (step.name, "action")
        done = attempts.get(key, 0)
        if done >= step.attempts:
            await self._begin_compensation(holder, state.step, f"{step.name}: no attempts left ({done} started)")
            return
        attempt = done + 1
        holder.state = await self._write(holder, log=[LogEntry(step.name, "action", "started", attempt)])
        attempts[key] = attempt
        await self._probe("before_action", holder, step)
        ctx = StepContext(
            holder.state.data, saga_id=state.id, saga=saga.name, step=step.name, phase="action",
            attempt=attempt, fence=state.fence,
        )
        try:
            result = await asyncio.wait_for(step.action(ctx), step.timeout)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            await self._action_failed(saga, holder, step, attempt, exc)
            return
        await self._probe("after_action", holder, step)
        data = {**holder.state.data, **(result or {})}
        last = holder.state.step + 1 >= len(saga.steps)
        holder.state = await self._write(
            holder, step=holder.state.step + 1, data=data, status=COMPLETED if last else None,
            log=[LogEntry(step.name, "action", "succeeded", attempt)]
            + ([LogEntry("", "saga", COMPLETED)] if last else []),
        )
        await self._probe("after_persist", holder, step)

    async def _action_failed(self, saga: Saga, holder: _Holder, step: Step, attempt: int, exc: Exception) -> None:
        timed_out = isinstance(exc, TimeoutError)
        detail = f"timed out after {step.timeout:g}s" if timed_out else f"{type(exc).__name__}: {exc}"
        event = "timed_out" if timed_out else "failed"
        await self._probe("after_failure", holder, step)
        if retryable(exc) and attempt < step.attempts:
            holder.state = await self._write(holder, log=[LogEntry(step.name, "action", event, attempt, detail)])
            logger.info("saga %s: step %s attempt %d %s; retrying", holder.state.id, step.name, attempt, event)
            await asyncio.sleep(step.backoff.delay(attempt - 1))
            return
        await self._begin_compensation(
            holder, holder.state.step, f"{step.name}: {detail}", log=[LogEntry(step.name, "action", event, attempt, detail)]
        )

    async def _begin_compensation(self, holder: _Holder, index: int, error: str, log: list[LogEntry] | None = None) -> None:
        logger.warning("saga %s: compensating from step %d: %s", holder.state.id, index, error)
        holder.state = await self._write(
            holder, status=COMPENSATING, step=index, error=error,
            log=[*(log or []), LogEntry("", "saga", COMPENSATING, 0, error)],
        )

    async def _backward(
        self, saga: Saga, holder: _Holder, attempts: dict[tuple[str, str], int], tries: dict[str, int]
    ) -> None:
        state = holder.state
        index = _next_to_undo(saga, state.step, attempts)
        if index < 0:
            holder.state = await self._write(holder, status=COMPENSATED, step=-1, log=[LogEntry("", "saga", COMPENSATED)])
            return
        if index != state.step:  # steps that never started (or have nothing to undo) are skipped
            holder.state = await self._write(holder, step=index)
        step = saga.steps[index]
        assert step.compensation is not None
        key = (step.name, "compensation")
        attempt = attempts.get(key, 0) + 1
        holder.state = await self._write(holder, log=[LogEntry(step.name, "compensation", "started", attempt)])
        attempts[key] = attempt
        tries[step.name] = tries.get(step.name, 0) + 1
        await self._probe("before_compensation", holder, step)
        ctx = StepContext(
            holder.state.data, saga_id=state.id, saga=saga.name, step=step.name, phase="compensation",
            attempt=attempt, fence=state.fence,
        )
        try:
            result = await asyncio.wait_for(step.compensation(ctx), step.compensation_timeout or step.timeout)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            detail = f"{type(exc).__name__}: {exc}" if not isinstance(exc, TimeoutError) else "timed out"
            entry = LogEntry(step.name, "compensation", "failed", attempt, detail)
            if step.compensation_attempts is not None and tries[step.name] >= step.compensation_attempts:
                logger.error("saga %s: compensation of %s gave up: %s", state.id, step.name, detail)
                holder.state = await self._write(
                    holder, status=FAILED, error=f"compensation of {step.name} failed: {detail}",
                    log=[entry, LogEntry("", "saga", FAILED, 0, detail)],
                )
                return
            holder.state = await self._write(holder, log=[entry])
            await asyncio.sleep(step.backoff.delay(tries[step.name] - 1))
            return
        await self._probe("after_compensation", holder, step)
        data = {**holder.state.data, **(result or {})}
        following = _next_to_undo(saga, index - 1, attempts)
        holder.state = await self._write(
            holder, step=following, data=data, status=COMPENSATED if following < 0 else None,
            log=[LogEntry(step.name, "compensation", "succeeded", attempt)]
            + ([LogEntry("", "saga", COMPENSATED)] if following < 0 else []),
        )
        await self._probe("after_compensation_persist", holder, step)

    async def _write(self, holder: _Holder, **changes: Any) -> SagaState:
        return await self.store.transition(holder.state, ttl=self.lease_ttl, **changes)

    async def _probe(self, point: str, holder: _Holder, step: Step) -> None:
        if self.probe is not None:
            result = self.probe(point, holder.state.id, step.name)
            if result is not None:
                await result


class _Holder:
    """The current state of a saga being driven, shared by the drive and its lease renewal."""

    __slots__ = ("lost", "state")

    def __init__(self, state: SagaState) -> None:
        self.state = state
        self.lost = False


def _cancelling() -> bool:
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


def _next_to_undo(saga: Saga, start: int, attempts: Mapping[tuple[str, str], int]) -> int:
    """The highest index ≤ ``start`` whose action started and has a compensation; -1 when none is left."""
    for i in range(min(start, len(saga.steps) - 1), -1, -1):
        step = saga.steps[i]
        if step.compensation is not None and attempts.get((step.name, "action"), 0) > 0:
            return i
    return -1


__all__ = ["PROBE_POINTS", "Probe", "SagaOrchestrator"]
