"""``PoolStats``: what a connection pool reports to admin APIs and metrics.

A frozen snapshot rather than live attributes, so a caller can serialise it
(``as_dict()``) or compare two snapshots without racing the pool.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True, slots=True)
class PoolStats:
    """A snapshot of one pool, for admin APIs and metrics."""

    host: str
    port: int
    max_size: int
    open: int  # connected sockets (idle + in use)
    idle: int
    in_use: int
    connecting: int
    waiting: int  # requests queued for a free connection
    connections_opened: int  # total since start
    requests: int  # exchanges started
    reused: int  # exchanges on a connection that had served before
    stale_retries: int  # idempotent requests retried after a stale keep-alive connection
    connect_errors: int

    def as_dict(self) -> dict[str, int | str]:
        """The snapshot as a JSON-ready dict."""
        return asdict(self)
