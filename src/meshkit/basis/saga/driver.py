"""The saga state machine: one :class:`Driver` moves one leased saga through its steps until it ends.

Each arrow below is one committed, fenced write (see :mod:`.store`):

- running, step *i*: log "action started" → call the action (timeout) →
  merge its result into the data, step *i+1* (the last step also sets
  ``completed``). A failure is logged and retried with backoff up to
  ``retries``; a crash mid-attempt counts as an attempt (attempts are counted
  from the log), so a step that keeps killing its orchestrator still ends.
  When attempts run out, or on :class:`~.definition.Abort`, the saga turns
  ``compensating`` at step *i*.
- compensating, step *j*: every step whose action *started* (it may have taken
  effect even if it failed or timed out) is compensated, last first; the
  compensation is retried until it succeeds (or ``compensation_attempts`` →
  ``failed``); after the first step: ``compensated``.

While it drives, the driver renews the lease every ``lease_ttl / 3``; when the
lease is found lost, the drive is cancelled and :class:`~.store.LeaseLost` raised.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

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
from meshkit.basis.tasks import is_failure

logger = logging.getLogger("meshkit.saga")

#: ``probe(point, saga_id, step)``: called at every point where a crash matters (tests kill the process there).
Probe = Callable[[str, str, str], Awaitable[None] | None]
PROBE_POINTS = (
    "before_action", "after_action", "after_persist", "after_failure",
    "before_compensation", "after_compensation", "after_compensation_persist",
)


class Driver:
    """Drives ``state`` (claimed by its ``lease_owner``) of ``saga`` to an end."""

    def __init__(
        self, store: SagaStore, saga: Saga, state: SagaState, *, lease_ttl: float, probe: Probe | None = None
    ) -> None:
        self.store = store
        self.saga = saga
        self.state = state
        self.lease_ttl = lease_ttl
        self.probe = probe
        self.lost = False
        self._attempts: dict[tuple[str, str], int] = {}
        self._tries: dict[str, int] = {}  # compensation attempts by this driver (for compensation_attempts)

    async def run(self) -> SagaState:
        """Drive to the end, renewing the lease meanwhile; :class:`LeaseLost` if another orchestrator took over."""
        drive = asyncio.create_task(self._drive())
        renew = asyncio.create_task(self._renew(drive))
        try:
            return await drive
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if self.lost and not (task is not None and task.cancelling()):
                raise LeaseLost(f"saga {self.state.id!r}: lease lost while a step was running") from None
            drive.cancel()
            raise
        finally:
            renew.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await renew

    async def _renew(self, drive: asyncio.Task[SagaState]) -> None:
        while True:
            await asyncio.sleep(self.lease_ttl / 3)
            try:
                kept = await self.store.renew(self.state, self.lease_ttl)
            except Exception as exc:  # transient: the next renewal or write will tell
                logger.warning("saga %s: lease renewal failed: %s", self.state.id, exc)
                continue
            if not kept:
                self.lost = True
                drive.cancel()
                return

    async def _drive(self) -> SagaState:
        self._attempts = await self.store.attempts(self.state.id)
        while not self.state.done:
            if self.state.status == RUNNING:
                await self._forward()
            else:
                await self._backward()
        return self.state

    async def _forward(self) -> None:
        saga, state = self.saga, self.state
        if state.step >= len(saga.steps):  # defensive: every step done but no end recorded
            await self._write(status=COMPLETED, log=[LogEntry("", "saga", COMPLETED)])
            return
        step = saga.steps[state.step]
        started = self._attempts.get((step.name, "action"), 0)
        if started >= step.attempts:
            await self._begin_compensation(f"{step.name}: no attempts left ({started} started)")
            return
        attempt = started + 1
        await self._write(log=[LogEntry(step.name, "action", "started", attempt)])
        self._attempts[(step.name, "action")] = attempt
        await self._probe("before_action", step)
        try:
            result = await asyncio.wait_for(step.action(self._context(step, "action", attempt)), step.timeout)
        except BaseException as exc:
            if not is_failure(exc):
                raise
            await self._action_failed(step, attempt, exc)
            return
        await self._probe("after_action", step)
        last = state.step + 1 >= len(saga.steps)
        await self._write(
            step=state.step + 1, data={**self.state.data, **(result or {})}, status=COMPLETED if last else None,
            log=[LogEntry(step.name, "action", "succeeded", attempt), *([LogEntry("", "saga", COMPLETED)] if last else [])],
        )
        await self._probe("after_persist", step)

    async def _action_failed(self, step: Step, attempt: int, exc: BaseException) -> None:
        timed_out = isinstance(exc, TimeoutError)
        detail = f"timed out after {step.timeout:g}s" if timed_out else f"{type(exc).__name__}: {exc}"
        entry = LogEntry(step.name, "action", "timed_out" if timed_out else "failed", attempt, detail)
        await self._probe("after_failure", step)
        if retryable(exc) and attempt < step.attempts:
            await self._write(log=[entry])
            logger.info("saga %s: step %s attempt %d: %s; retrying", self.state.id, step.name, attempt, detail)
            await asyncio.sleep(step.backoff.delay(attempt - 1))
            return
        await self._begin_compensation(f"{step.name}: {detail}", entry)

    async def _begin_compensation(self, error: str, *entries: LogEntry) -> None:
        logger.warning("saga %s: compensating from step %d: %s", self.state.id, self.state.step, error)
        await self._write(status=COMPENSATING, error=error, log=[*entries, LogEntry("", "saga", COMPENSATING, 0, error)])

    async def _backward(self) -> None:
        index = next_to_undo(self.saga, self.state.step, self._attempts)
        if index < 0:
            await self._write(status=COMPENSATED, step=-1, log=[LogEntry("", "saga", COMPENSATED)])
            return
        if index != self.state.step:  # steps that never started, or have nothing to undo, are skipped
            await self._write(step=index)
        step = self.saga.steps[index]
        assert step.compensation is not None
        attempt = self._attempts.get((step.name, "compensation"), 0) + 1
        await self._write(log=[LogEntry(step.name, "compensation", "started", attempt)])
        self._attempts[(step.name, "compensation")] = attempt
        tries = self._tries[step.name] = self._tries.get(step.name, 0) + 1
        await self._probe("before_compensation", step)
        ctx = self._context(step, "compensation", attempt)
        try:
            result = await asyncio.wait_for(step.compensation(ctx), step.compensation_timeout or step.timeout)
        except BaseException as exc:
            if not is_failure(exc):
                raise
            detail = "timed out" if isinstance(exc, TimeoutError) else f"{type(exc).__name__}: {exc}"
            entry = LogEntry(step.name, "compensation", "failed", attempt, detail)
            if step.compensation_attempts is not None and tries >= step.compensation_attempts:
                logger.error("saga %s: compensation of %s gave up: %s", self.state.id, step.name, detail)
                await self._write(status=FAILED, error=f"compensation of {step.name} failed: {detail}",
                                  log=[entry, LogEntry("", "saga", FAILED, 0, detail)])
                return
            await self._write(log=[entry])
            await asyncio.sleep(step.backoff.delay(tries - 1))
            return
        await self._probe("after_compensation", step)
        following = next_to_undo(self.saga, index - 1, self._attempts)
        await self._write(
            step=following, data={**self.state.data, **(result or {})},
            status=COMPENSATED if following < 0 else None,
            log=[LogEntry(step.name, "compensation", "succeeded", attempt),
                 *([LogEntry("", "saga", COMPENSATED)] if following < 0 else [])],
        )
        await self._probe("after_compensation_persist", step)

    def _context(self, step: Step, phase: str, attempt: int) -> StepContext:
        s = self.state
        return StepContext(s.data, saga_id=s.id, saga=self.saga.name, step=step.name, phase=phase,
                           attempt=attempt, fence=s.fence)

    async def _write(self, **changes: Any) -> None:
        self.state = await self.store.transition(self.state, ttl=self.lease_ttl, **changes)

    async def _probe(self, point: str, step: Step) -> None:
        if self.probe is not None:
            result = self.probe(point, self.state.id, step.name)
            if result is not None:
                await result


def next_to_undo(saga: Saga, start: int, attempts: Mapping[tuple[str, str], int]) -> int:
    """The highest index ≤ ``start`` whose action started and has a compensation; -1 when none is left."""
    for i in range(min(start, len(saga.steps) - 1), -1, -1):
        step = saga.steps[i]
        if step.compensation is not None and attempts.get((step.name, "action"), 0) > 0:
            return i
    return -1


__all__ = ["PROBE_POINTS", "Driver", "Probe", "next_to_undo"]
