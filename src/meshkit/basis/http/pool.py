"""Keep-alive connections to one upstream (host, port), bounded, reused most-recent first.

Why these choices:

- **LIFO idle stack.** The connection used last is the one most likely still
  open (the server's keep-alive timer restarted most recently) and the extra
  connections opened in a burst sink to the bottom, where idle expiry closes
  them: the pool shrinks back after load instead of keeping every connection
  warm by round-robin.
- **A hard limit per host** (``max_size``): a request that finds every slot busy
  waits in FIFO order for one; the wait counts against the request's deadline
  and ends in :class:`~meshkit.basis.http.errors.PoolTimeout` (nothing sent). A
  released connection is handed directly to the first waiter, and so is the slot
  of a discarded one (the waiter then opens its own connection).
- **Idle expiry** by one timer per pool at the oldest idle connection's expiry,
  not a task; an idle connection the server closes is dropped as soon as the
  loop reports it lost.
- **Synchronous fast path**: :meth:`try_acquire` takes an idle connection
  without an ``await``; only connecting and waiting go through coroutines.
- **One deadline timer per pool**, not one per request: :meth:`watch` records an
  exchange's deadline and arms the timer only when that deadline is earlier than
  the armed one. With one timeout per route, deadlines arrive in increasing
  order, so the timer is re-armed about once per timeout period instead of twice
  per request (``call_at`` + ``cancel`` cost ~1-3 µs each); when it fires it
  scans the exchanges in flight (at most ``max_size``).
"""

from __future__ import annotations

import asyncio
from collections import deque

from meshkit.basis.http.connection import Connection
from meshkit.basis.http.errors import ConnectError, PoolTimeout, RequestTimeout, TransportError
from meshkit.basis.http.request import host_line
from meshkit.basis.http.stats import PoolStats


class ConnectionPool:
    """Bounded keep-alive connections to one upstream."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        host: str,
        port: int,
        *,
        max_size: int,
        idle_timeout: float,
        connect_timeout: float,
    ) -> None:
        if max_size < 1:
            raise ValueError("max_size must be at least 1")
        #: The loop this pool (and its connections) belong to.
        self.loop = loop
        self.host = host
        self.port = port
        self.host_line = host_line(host, port)
        self.max_size = max_size
        self.idle_timeout = idle_timeout
        self.connect_timeout = connect_timeout
        self._idle: list[Connection] = []
        self._all: set[Connection] = set()
        self._slots = 0  # connecting + open, never above max_size
        self._connecting = 0
        self._waiters: deque[asyncio.Future] = deque()
        self._sweep: asyncio.TimerHandle | None = None
        self._watched: dict[Connection, tuple[float, float]] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0
        self._closed = False
        self.connections_opened = 0
        self.requests = 0
        self.reused = 0
        self.stale_retries = 0
        self.connect_errors = 0

    # -- acquire -------------------------------------------------------------

    def try_acquire(self) -> Connection | None:
        """An idle connection that is still open and fresh, without waiting, or ``None``."""
        idle = self._idle
        if idle:
            now = self.loop.time()
            while idle:
                conn = idle.pop()
                if conn.open and now - conn.idle_since < self.idle_timeout:
                    conn.on_idle_lost = None
                    self.reused += 1
                    return conn
                self._drop(conn)
        return None

    async def acquire(self, deadline: float | None, *, fresh: bool = False) -> Connection:
        """A connection for one exchange: idle, new, or the next one released.

        ``fresh`` skips the idle stack (used to retry after a stale connection).
        """
        if self._closed:
            raise TransportError("the HTTP transport is closed", host=self.host, port=self.port)
        while True:
            if not fresh:
                conn = self.try_acquire()
                if conn is not None:
                    return conn
            if self._slots < self.max_size and not self._has_waiters():
                self._slots += 1
                return await self._connect(deadline)
            if fresh and self._idle:
                # Full, but an idle connection can give up its slot to the fresh one we need.
                self._drop(self._idle.pop(0), slot_held=True)
                return await self._connect(deadline)
            got = await self._wait(deadline)
            if got is None:  # a slot was handed over: open our own connection
                return await self._connect(deadline)
            if got.open:
                self.reused += 1
                return got
            self._drop(got, slot_held=True)
            return await self._connect(deadline)

    def _has_waiters(self) -> bool:
        waiters = self._waiters
        while waiters and waiters[0].done():  # timed out or cancelled while queued
            waiters.popleft()
        return bool(waiters)

    async def _wait(self, deadline: float | None) -> Connection | None:
        fut = self.loop.create_future()
        self._waiters.append(fut)
        handle = None
        if deadline is not None:
            handle = self.loop.call_at(deadline, _expire_waiter, fut, self)
        try:
            return await fut
        except BaseException:
            if fut.done() and not fut.cancelled() and fut.exception() is None:
                # Handed a connection or slot just as we gave up: pass it on.
                got = fut.result()
                if got is None:
                    self._free_slot()
                else:
                    self.release(got)
            raise
        finally:
            if handle is not None:
                handle.cancel()
            if not fut.done():
                fut.cancel()

    async def _connect(self, deadline: float | None) -> Connection:
        """Open a connection in a slot already counted in ``_slots``."""
        loop = self.loop
        timeout = self.connect_timeout
        by_deadline = False
        if deadline is not None and deadline - loop.time() < timeout:
            timeout = max(deadline - loop.time(), 0.0)
            by_deadline = True
        self._connecting += 1
        try:
            _, conn = await asyncio.wait_for(
                loop.create_connection(lambda: Connection(loop, self.host, self.port), self.host, self.port),
                timeout,
            )
        except TimeoutError as exc:
            self._connect_failed()
            where = f"{self.host}:{self.port}"
            if by_deadline:
                raise RequestTimeout(
                    f"the request's deadline passed while connecting to {where}",
                    host=self.host, port=self.port, request_sent=False,
                ) from exc
            raise ConnectError(
                f"connecting to {where} timed out after {timeout:g} s: is the upstream up and reachable?",
                host=self.host, port=self.port,
            ) from exc
        except OSError as exc:
            self._connect_failed()
            raise ConnectError(
                f"cannot connect to {self.host}:{self.port}: {exc.strerror or exc}; is the upstream running?",
                host=self.host, port=self.port,
            ) from exc
        except BaseException:  # cancelled while connecting: not the upstream's fault
            self._free_slot()
            raise
        finally:
            self._connecting -= 1
        self.connections_opened += 1
        if self._closed:  # closed while we connected; close() already reset the slots
            conn.close()
            raise TransportError("the HTTP transport is closed", host=self.host, port=self.port)
        self._all.add(conn)
        return conn

    def _connect_failed(self) -> None:
        self.connect_errors += 1
        self._free_slot()

    # -- release -------------------------------------------------------------

    def release(self, conn: Connection) -> None:
        """Take back a connection after an exchange: reuse it if it is clean, else close it."""
        if not conn.reusable or self._closed:
            self.discard(conn)
            return
        waiters = self._waiters
        while waiters:
            fut = waiters.popleft()
            if not fut.done():
                fut.set_result(conn)
                return
        conn.idle_since = self.loop.time()
        conn.on_idle_lost = self._idle_lost
        self._idle.append(conn)
        if self._sweep is None:
            self._sweep = self.loop.call_at(conn.idle_since + self.idle_timeout, self._expire_idle)

    def discard(self, conn: Connection) -> None:
        """Close a connection that cannot be reused and free its slot."""
        conn.close()
        self._drop(conn)

    def _drop(self, conn: Connection, *, slot_held: bool = False) -> None:
        conn.on_idle_lost = None
        if conn in self._all:
            self._all.discard(conn)
            conn.close()
            if not slot_held:
                self._free_slot()

    def _free_slot(self) -> None:
        if self._closed:
            return
        waiters = self._waiters
        while waiters:
            fut = waiters.popleft()
            if not fut.done():
                fut.set_result(None)  # the waiter inherits the slot
                return
        self._slots -= 1

    def _idle_lost(self, conn: Connection) -> None:
        try:
            self._idle.remove(conn)
        except ValueError:
            pass
        self._drop(conn)

    def _expire_idle(self) -> None:
        self._sweep = None
        idle = self._idle
        limit = self.loop.time() - self.idle_timeout
        n = 0
        while n < len(idle) and idle[n].idle_since <= limit:
            n += 1
        expired = idle[:n]
        del idle[:n]
        for conn in expired:
            self._drop(conn)
        if idle:
            self._sweep = self.loop.call_at(idle[0].idle_since + self.idle_timeout, self._expire_idle)

    # -- deadlines -----------------------------------------------------------

    def watch(self, conn: Connection, deadline: float, timeout: float) -> None:
        """Expire ``conn``'s exchange at ``deadline`` (loop time) unless :meth:`unwatch` comes first."""
        self._watched[conn] = (deadline, timeout)
        if self._timer is None or deadline < self._timer_at:
            if self._timer is not None:
                self._timer.cancel()
            self._timer_at = deadline
            self._timer = self.loop.call_at(deadline, self._expire_watched)

    def unwatch(self, conn: Connection) -> None:
        """The exchange on ``conn`` ended: forget its deadline."""
        self._watched.pop(conn, None)

    def _expire_watched(self) -> None:
        self._timer = None
        # Half a millisecond of slack: the loop's timers have millisecond resolution.
        now = self.loop.time() + 0.0005
        watched = self._watched
        expired = [(conn, timeout) for conn, (deadline, timeout) in watched.items() if deadline <= now]
        for conn, timeout in expired:
            del watched[conn]
            conn.expire(
                RequestTimeout(
                    f"no complete answer from {conn.host}:{conn.port} within {timeout:g} s",
                    host=conn.host,
                    port=conn.port,
                )
            )
        if watched and self._timer is None and not self._closed:
            self._timer_at = min(d for d, _ in watched.values())
            self._timer = self.loop.call_at(self._timer_at, self._expire_watched)

    # -- admin ---------------------------------------------------------------

    def stats(self) -> PoolStats:
        """A snapshot of this pool's connections and counters."""
        open_ = len(self._all)
        idle = len(self._idle)
        return PoolStats(
            host=self.host,
            port=self.port,
            max_size=self.max_size,
            open=open_,
            idle=idle,
            in_use=open_ - idle,
            connecting=self._connecting,
            waiting=sum(1 for f in self._waiters if not f.done()),
            connections_opened=self.connections_opened,
            requests=self.requests,
            reused=self.reused,
            stale_retries=self.stale_retries,
            connect_errors=self.connect_errors,
        )

    def close(self) -> None:
        """Close every connection and fail every waiter; later acquires fail."""
        self._closed = True
        if self._sweep is not None:
            self._sweep.cancel()
            self._sweep = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._watched.clear()
        while self._waiters:
            fut = self._waiters.popleft()
            if not fut.done():
                fut.set_exception(TransportError("the HTTP transport was closed", host=self.host, port=self.port))
        self._idle.clear()
        for conn in list(self._all):
            conn.on_idle_lost = None
            conn.close()
        self._all.clear()
        self._slots = 0


def _expire_waiter(fut: asyncio.Future, pool: ConnectionPool) -> None:
    if not fut.done():
        fut.set_exception(
            PoolTimeout(
                f"no free connection to {pool.host}:{pool.port} before the deadline "
                f"({pool.max_size} in use): raise the per-host limit or the timeout, or shed load",
                host=pool.host,
                port=pool.port,
            )
        )
