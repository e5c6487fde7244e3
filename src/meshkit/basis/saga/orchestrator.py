"""The saga orchestrator: drives sagas step by step, persisting every transition.

::

    sagas = SagaOrchestrator(engine, prefix="shop", sagas=[checkout], owner=settings.instance_id)
    saga_id = await sagas.begin("checkout", {"order_id": "o-1", "sku": "A", "qty": 2, "amount": 1500})
    state = await sagas.run(saga_id)           # drive it here, now; or let the worker do it:
    await sagas.start()                        # claims and resumes unfinished sagas (after a crash too)

How a saga moves from step to step is :mod:`.driver`'s business.

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
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from sqlalchemy.ext.asyncio import AsyncEngine

from meshkit.basis.errors import ConfigError, GatewayTimeout, NotFound
from meshkit.basis.saga.definition import Saga
from meshkit.basis.saga.driver import Driver, Probe
from meshkit.basis.saga.store import LeaseLost, LogEntry, SagaState, SagaStore
from meshkit.basis.storage import Transaction

if TYPE_CHECKING:
    from meshkit.basis.service import Service

logger = logging.getLogger("meshkit.saga")


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
        self, name: str, data: Mapping[str, Any], *, saga_id: str | None = None, session: Transaction | None = None
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
            return await Driver(self.store, saga, state, lease_ttl=self.lease_ttl, probe=self.probe).run()
        except LeaseLost as exc:
            logger.warning("saga %s: %s", saga_id, exc.message)
            return None


def use_sagas(service: Service, engine: AsyncEngine, sagas: Iterable[Saga], *, prefix: str | None = None,
              **options: Any) -> SagaOrchestrator:
    """A :class:`SagaOrchestrator` tied to ``service``: its worker runs from start-up to shutdown.

    The owner is the instance id, so a restarted instance resumes its own sagas at once;
    ``prefix`` defaults to the service name; ``options`` are the orchestrator's (lease_ttl, poll...).
    """
    orchestrator = SagaOrchestrator(
        engine, prefix=prefix or service.name, sagas=sagas, owner=service.settings.instance_id, **options
    )
    service.state["sagas"] = orchestrator

    async def start(_service: Any) -> None:
        await orchestrator.start()

    async def stop(_service: Any) -> None:
        await orchestrator.stop()

    service.on_startup(start)
    service.on_shutdown(stop)
    return orchestrator


__all__ = ["SagaOrchestrator", "use_sagas"]
