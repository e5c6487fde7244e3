"""Sets of tables named with a service's prefix (``catalog_outbox``, ``bank_events``...), built once per prefix.

The messaging, event store and saga tables all live in the service's own
database under its prefix; this module holds what they share::

    @dataclass(frozen=True, slots=True)
    class AuditTables(TableSet):
        prefix: str
        metadata: MetaData
        audit: Table

    @prefixed
    def audit_tables(p: str, md: MetaData) -> AuditTables:
        return AuditTables(p, md, Table(f"{p}_audit", md, Column("seq", SEQ, primary_key=True), ...))

    audit_tables("orders")      # checked, built on the first call, the same objects afterwards
    audit_tables("orders").all()  # (orders_audit,): the tables in field order
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import fields
from typing import TypeVar

from sqlalchemy import BigInteger, Integer, MetaData, Table

#: SQLite only auto-increments an INTEGER PRIMARY KEY; PostgreSQL gets a BIGINT identity.
SEQ = BigInteger().with_variant(Integer(), "sqlite")

T = TypeVar("T", bound="TableSet")


class TableSet:
    """Base of the dataclasses that hold one prefix's tables (fields ``prefix``, ``metadata``, then tables)."""

    __slots__ = ()

    def all(self) -> tuple[Table, ...]:
        """The tables, in the order of the fields (the order to create them in)."""
        values = (getattr(self, f.name) for f in fields(self))  # type: ignore[arg-type]
        return tuple(v for v in values if isinstance(v, Table))


def check_prefix(prefix: str) -> str:
    """``prefix`` if it can start a table name (letters, digits and '_', starting with a letter)."""
    if not prefix or not prefix.replace("_", "").isalnum() or not prefix[0].isalpha():
        raise ValueError(f"table prefix {prefix!r} must be letters, digits and '_', starting with a letter")
    return prefix


def prefixed(build: Callable[[str, MetaData], T]) -> Callable[[str], T]:
    """Decorate ``build(prefix, metadata)``: the result takes a prefix, checks it, and builds once per prefix."""
    cache: dict[str, T] = {}

    @functools.wraps(build)
    def tables(prefix: str) -> T:
        found = cache.get(prefix)
        if found is None:
            found = cache[prefix] = build(check_prefix(prefix), MetaData())
        return found

    return tables


__all__ = ["SEQ", "TableSet", "check_prefix", "prefixed"]
