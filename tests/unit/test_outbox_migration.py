"""``outbox.migration.create_table``: one function creates every basis table (messaging, events, sagas)."""

from __future__ import annotations

import sqlalchemy as sa
from alembic.migration import MigrationContext
from alembic.operations import Operations

from meshkit.basis.outbox.migration import create_table


def _schema(table: sa.Table) -> tuple[str, list[str]]:
    engine = sa.create_engine("sqlite://")
    with engine.begin() as conn:
        create_table(Operations(MigrationContext.configure(conn)), table)
        ddl = conn.exec_driver_sql("SELECT sql FROM sqlite_master WHERE name = :n", {"n": table.name}).scalar_one()
        indexes = [r[1] for r in conn.exec_driver_sql(f"PRAGMA index_list('{table.name}')")]
    return ddl, indexes


def test_named_multi_column_unique_constraint_is_created_and_the_source_table_left_alone() -> None:
    table = sa.Table(
        "t_events", sa.MetaData(),
        sa.Column("position", sa.Integer, primary_key=True),
        sa.Column("aggregate_id", sa.String(50), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.UniqueConstraint("aggregate_id", "version", name="uq_t_events_aggregate_version"),
    )
    before = set(table.constraints)
    ddl, _ = _schema(table)
    assert "CONSTRAINT uq_t_events_aggregate_version UNIQUE (aggregate_id, version)" in ddl
    assert set(table.constraints) == before


def test_named_composite_primary_key_and_indexes_are_created() -> None:
    table = sa.Table(
        "t_inbox", sa.MetaData(),
        sa.Column("consumer", sa.String(50), nullable=False),
        sa.Column("event_id", sa.String(50), nullable=False),
        sa.Column("at", sa.Float, nullable=False),
        sa.PrimaryKeyConstraint("consumer", "event_id", name="pk_t_inbox"),
        sa.Index("ix_t_inbox_at", "at"),
    )
    ddl, indexes = _schema(table)
    assert "CONSTRAINT pk_t_inbox PRIMARY KEY (consumer, event_id)" in ddl
    assert "ix_t_inbox_at" in indexes
