"""Small SQL helpers shared by the outbox, inbox, projections and idempotency keys."""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, Table, delete, select, tuple_
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


async def delete_some(session: Transaction, table: Table, where: ColumnElement[bool], *, limit: int) -> int:
    """Delete at most ``limit`` rows of ``table`` matching ``where``, by primary key; how many went.

    Housekeeping deletes in chunks, each in a transaction of its own, so that
    purging a large backlog never holds SQLite's write lock (or a PostgreSQL
    transaction) for long: the service's own writes go in between.
    """
    pk = list(table.primary_key.columns)
    key = pk[0] if len(pk) == 1 else tuple_(*pk)
    chosen = select(*pk).where(where).limit(limit)
    result = await session.execute(delete(table).where(key.in_(chosen)))
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


__all__ = ["delete_some", "insert_ignore"]
