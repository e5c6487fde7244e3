"""The messaging tables a service keeps in its own database, named with the service's prefix.

``tables_for("catalog")`` gives SQLAlchemy :class:`~sqlalchemy.Table` objects:

- ``catalog_outbox``: events waiting to be published (``seq`` orders them);
- ``catalog_leases``: who runs the relay / a projection right now (one holder per name);
- ``catalog_inbox``: event ids each consumer has applied (idempotent consumers);
- ``catalog_checkpoints``: the last stream position each projection applied;
- ``catalog_idempotency``: HTTP idempotency keys and their stored responses.

The schema is created by the service's own Alembic migrations through
:mod:`meshkit.basis.outbox.migration`. Times are float seconds since the epoch
(one portable type on SQLite and PostgreSQL).
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import (
    BigInteger,
    Column,
    Float,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
)

from meshkit.basis.storage.tables import SEQ, TableSet, prefixed


@dataclass(frozen=True, slots=True)
class MessagingTables(TableSet):
    """The five tables of one prefix (and the :class:`MetaData` holding them)."""

    prefix: str
    metadata: MetaData
    outbox: Table
    leases: Table
    inbox: Table
    checkpoints: Table
    idempotency: Table


@prefixed
def tables_for(p: str, md: MetaData) -> MessagingTables:
    """The messaging tables of ``prefix`` (the same objects on every call)."""
    outbox = Table(
        f"{p}_outbox", md,
        Column("seq", SEQ, primary_key=True, autoincrement=True),
        Column("event_id", String(64), nullable=False, unique=True),
        Column("subject", String(255), nullable=False),
        Column("aggregate_id", String(255), nullable=True),
        Column("body", LargeBinary, nullable=False),
        Column("created_at", Float, nullable=False),
        Column("sent_at", Float, nullable=True),
        Index(f"ix_{p}_outbox_pending", "sent_at", "seq"),
    )
    leases = Table(
        f"{p}_leases", md,
        Column("name", String(100), primary_key=True),
        Column("holder", String(200), nullable=False),
        Column("expires_at", Float, nullable=False),
    )
    inbox = Table(
        f"{p}_inbox", md,
        Column("consumer", String(100), nullable=False),
        Column("event_id", String(64), nullable=False),
        Column("processed_at", Float, nullable=False),
        PrimaryKeyConstraint("consumer", "event_id", name=f"pk_{p}_inbox"),
        Index(f"ix_{p}_inbox_processed_at", "processed_at"),
    )
    checkpoints = Table(
        f"{p}_checkpoints", md,
        Column("name", String(100), primary_key=True),
        Column("position", BigInteger, nullable=False),
        Column("updated_at", Float, nullable=False),
    )
    idempotency = Table(
        f"{p}_idempotency", md,
        Column("key", String(300), primary_key=True),
        Column("fingerprint", String(64), nullable=False),
        Column("state", String(10), nullable=False),
        Column("status", Integer, nullable=True),
        Column("headers", LargeBinary, nullable=True),
        Column("body", LargeBinary, nullable=True),
        Column("created_at", Float, nullable=False),
        Column("expires_at", Float, nullable=False),
        Index(f"ix_{p}_idempotency_expires_at", "expires_at"),
    )
    return MessagingTables(p, md, outbox, leases, inbox, checkpoints, idempotency)


__all__ = ["MessagingTables", "tables_for"]
