"""Small SQL helpers shared by the outbox, inbox, projections and idempotency keys."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Table
from sqlalchemy.dialects import postgresql, sqlite

from meshkit.basis.storage import Transaction


def insert_ignore(session: Transaction, table: Table, values: dict[str, Any] | list[dict[str, Any]]) -> Any:
    """``INSERT ... ON CONFLICT DO NOTHING`` for the session's dialect (rowcount 0 when the row exists).

    ``values`` is one row, or a list of rows for one multi-row statement. Unlike
    catching a unique violation, this never aborts a PostgreSQL transaction.
    """
    dialect = session.bind.dialect.name if session.bind is not None else "sqlite"
    module = postgresql if dialect == "postgresql" else sqlite
    stmt = module.insert(table)
    stmt = stmt.values(values) if isinstance(values, list) else stmt.values(**values)
    return stmt.on_conflict_do_nothing()


__all__ = ["insert_ignore"]
