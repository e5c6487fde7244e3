"""Database exceptions become meshkit errors here, at the adapter boundary.

A repository wraps its work in :func:`translate_errors` (``transaction`` does it
for you) and sees only :mod:`meshkit.basis.errors`: a unique or primary-key
violation is a :class:`Conflict` whose ``details`` name the columns, a check or
not-null violation, or a value PostgreSQL refuses for its column (too long, out of
range, not valid text: SQLSTATE class 22), is :class:`Unprocessable`, a locked database or a lost
connection is :class:`Unavailable` (retry later), anything else is
:class:`Internal` — never a driver message to a client.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import exc as sa_exc

from meshkit.basis.errors import Conflict, Internal, MeshkitError, Unavailable, Unprocessable

# SQLSTATE classes and codes (PostgreSQL) and extended result codes (SQLite).
_PG_UNIQUE = "23505"
_PG_FOREIGN_KEY = "23503"
_PG_NOT_NULL = "23502"
_PG_CHECK = "23514"
_PG_DATA_EXCEPTION = "22"  # a value too long, out of range, malformed or not text (class 22)
_PG_UNAVAILABLE_PREFIXES = ("08", "53", "57P")  # connection, resources, shutdown
_PG_RETRYABLE = ("40001", "40P01")  # serialization failure, deadlock

_SQLITE_UNIQUE = re.compile(r"UNIQUE constraint failed: (.+)")
_PG_KEY = re.compile(r"Key \((?P<cols>[^)]*)\)=")


def translate(exc: BaseException) -> MeshkitError:
    """The meshkit error that stands for ``exc`` (a SQLAlchemy or driver exception)."""
    if isinstance(exc, MeshkitError):
        return exc
    orig = getattr(exc, "orig", None) or exc
    code = _sqlstate(orig)
    name = getattr(orig, "sqlite_errorname", "") or ""
    text = str(orig)
    if code == _PG_UNIQUE or name in ("SQLITE_CONSTRAINT_UNIQUE", "SQLITE_CONSTRAINT_PRIMARYKEY"):
        fields, constraint = _unique_fields(orig, text)
        details: dict[str, Any] = {"fields": fields}
        if constraint:
            details["constraint"] = constraint
        return Conflict(
            f"a record with the same {', '.join(fields) or 'key'} already exists",
            reason="duplicate",
            details=details,
        )
    if code == _PG_FOREIGN_KEY or name == "SQLITE_CONSTRAINT_FOREIGNKEY":
        return Conflict("the record refers to, or is referred to by, another record", reason="reference")
    if code in (_PG_NOT_NULL, _PG_CHECK) or name in ("SQLITE_CONSTRAINT_NOTNULL", "SQLITE_CONSTRAINT_CHECK"):
        return Unprocessable("the record breaks a database constraint", reason="constraint")
    if code and code.startswith(_PG_DATA_EXCEPTION):
        return Unprocessable("a value does not fit its column: too long, out of range or not valid text",
                             reason="invalid_value")
    if (
        code in _PG_RETRYABLE
        or (code and code.startswith(_PG_UNAVAILABLE_PREFIXES))
        or name in ("SQLITE_BUSY", "SQLITE_LOCKED", "SQLITE_BUSY_SNAPSHOT")
        or isinstance(exc, sa_exc.TimeoutError | sa_exc.DisconnectionError | OSError)
        or (isinstance(exc, sa_exc.DBAPIError) and exc.connection_invalidated)
    ):
        return Unavailable("the database is busy or unreachable; retry shortly", reason="database_unavailable")
    return Internal("database error", reason="database_error")


@contextmanager
def translate_errors() -> Iterator[None]:
    """Re-raise database exceptions raised inside the block as meshkit errors (``from`` the original)."""
    try:
        yield
    except MeshkitError:
        raise
    except (sa_exc.SQLAlchemyError, OSError) as exc:
        raise translate(exc) from exc


def _sqlstate(orig: BaseException) -> str | None:
    code = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)
    if code:
        return str(code)
    cause = orig.__cause__
    return getattr(cause, "sqlstate", None) if cause is not None else None


def _unique_fields(orig: BaseException, text: str) -> tuple[list[str], str | None]:
    m = _SQLITE_UNIQUE.search(text)
    if m:
        # "UNIQUE constraint failed: table.a, table.b"
        return [part.strip().rsplit(".", 1)[-1] for part in m.group(1).split(",")], None
    cause = orig.__cause__ or orig
    constraint = getattr(cause, "constraint_name", None)
    detail = getattr(cause, "detail", None) or text
    m = _PG_KEY.search(detail)
    fields = [c.strip().strip('"') for c in m.group("cols").split(",")] if m else []
    return fields, constraint
