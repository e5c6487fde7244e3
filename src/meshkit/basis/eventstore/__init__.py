"""Event sourcing: an event store on SQLite or PostgreSQL, aggregates, a repository.

::

    # a revision of the service's migrations calls migration.upgrade(op, "bank"): bank_events, bank_snapshots
    store = EventStore(engine, prefix="bank", outbox=outbox, source="bank")   # also to the outbox, same transaction
    accounts = EventSourcedRepository(store, Account, snapshot_every=50)

    account = Account("a-1")
    account.handle(Deposit(amount=10))
    await accounts.save(account)            # Conflict(reason="version_conflict") when someone saved first
    again = await accounts.load("a-1")      # snapshot + replay of the events after it

See :mod:`.aggregate` for the apply/handle pattern and :mod:`.store` for the
concurrency contract.
"""

from meshkit.basis.eventstore.aggregate import Aggregate, applies, handles
from meshkit.basis.eventstore.repository import EventSourcedRepository
from meshkit.basis.eventstore.store import EventStore, OutboxWriter, Snapshot, StoredEvent
from meshkit.basis.eventstore.tables import EventTables, event_tables

__all__ = [
    "Aggregate",
    "EventSourcedRepository",
    "EventStore",
    "EventTables",
    "OutboxWriter",
    "Snapshot",
    "StoredEvent",
    "applies",
    "event_tables",
    "handles",
]
