"""Sagas: long-running business transactions as steps with compensations, persisted and resumable.

::

    from meshkit.basis.saga import Abort, Saga, Step, use_sagas

    checkout = Saga("checkout", [
        Step("reserve", reserve_stock, release_stock, timeout=2.0, retries=3),
        Step("charge", charge_card, refund_card, timeout=5.0),
        Step("confirm", confirm_order),
    ])
    sagas = use_sagas(service, engine, [checkout])        # worker runs with the service (owner: instance id)
    saga_id = await sagas.begin("checkout", {"order_id": "o-1", "amount": 1500})
    state = await sagas.wait(saga_id)                     # state.status: "completed" or "compensated"

Tables come from :mod:`meshkit.basis.saga.migration` (call it from your own
Alembic revision). The participant contract (idempotent actions and
compensations keyed by ``ctx.idempotency_key``) is in :mod:`.definition`; the
state machine in :mod:`.driver`, leases and crash behaviour in :mod:`.orchestrator`; a worked example in
:mod:`.demo` and ``docs/sagas.md``.
"""

from meshkit.basis.saga.definition import Abort, Saga, Step, StepContext, StepFn, retryable
from meshkit.basis.saga.driver import PROBE_POINTS, Probe
from meshkit.basis.saga.orchestrator import SagaOrchestrator, use_sagas
from meshkit.basis.saga.store import (
    ACTIVE,
    COMPENSATED,
    COMPENSATING,
    COMPLETED,
    FAILED,
    RUNNING,
    TERMINAL,
    LeaseLost,
    LogEntry,
    SagaState,
    SagaStore,
)
from meshkit.basis.saga.tables import SagaTables, saga_tables

__all__ = [
    "ACTIVE",
    "COMPENSATED",
    "COMPENSATING",
    "COMPLETED",
    "FAILED",
    "PROBE_POINTS",
    "RUNNING",
    "TERMINAL",
    "Abort",
    "LeaseLost",
    "LogEntry",
    "Probe",
    "Saga",
    "SagaOrchestrator",
    "SagaState",
    "SagaStore",
    "SagaTables",
    "Step",
    "StepContext",
    "StepFn",
    "retryable",
    "saga_tables",
    "use_sagas",
]
