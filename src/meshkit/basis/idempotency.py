"""Idempotency keys for HTTP: a POST with ``Idempotency-Key`` runs once; retries get the first answer.

::

    store = SqlIdempotencyStore(sessions, prefix="orders")         # or MemoryIdempotencyStore()
    service = Service(settings, routes, middleware=[idempotency(store, ttl=24 * 3600)])

For a request with the header (methods ``POST`` by default):

- first time: the handler runs; a response below 500 is stored with the key;
- same key, same request (method, path, query, body): the stored response is
  replayed (header ``Idempotent-Replayed: true``) and the handler does not run;
- same key, different request: 422 ``idempotency_key_reused``;
- same key while the first is still running: waits up to ``wait`` seconds for
  it to finish and replays its answer, else 409 ``idempotency_in_progress``
  (with ``Retry-After``);
- a 5xx answer, one that says "not now" (408, 425, 429) or an exception frees the
  key (the client may retry, and its retry runs); a key whose
  first request died without answering is free again after ``lock_timeout``
  (keep it above the longest request: a request still running then has lost its
  claim, and its answer is neither stored nor frees the key of the one that took it over);
- keys expire ``ttl`` seconds after first use; the stores delete expired keys by
  themselves (at most every ``purge_every`` seconds, in chunks, on a request's way in);
- a client that disconnects before its body has arrived claims nothing, and the
  handler does not run on the part that came.

Keys are scoped to the caller (the gateway-injected subject, if any): two users
cannot see each other's responses by guessing keys. The SQL store keeps keys in
``<prefix>_idempotency`` (created by :mod:`meshkit.basis.outbox.migration`),
shared by all instances of the service — which is what makes concurrent
duplicates on different instances wait for one another.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import orjson
from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from meshkit.basis import context
from meshkit.basis.errors import BadRequest, Conflict, Unprocessable
from meshkit.basis.middleware.asgi import ASGIApp, Message, Receive, Scope, Send
from meshkit.basis.outbox.sql import delete_some, insert_ignore
from meshkit.basis.outbox.tables import tables_for
from meshkit.basis.storage import transaction

logger = logging.getLogger("meshkit.idempotency")
HEADER = b"idempotency-key"
REPLAYED = b"idempotent-replayed"
#: Answers below 500 that say the request was not done and may be sent again: never stored.
_TRY_AGAIN = frozenset({408, 425, 429})
#: Response headers never stored: they belong to the request that produced them.
#: Expired keys deleted per purge (one transaction).
_PURGE_CHUNK = 500
_PER_REQUEST = {b"x-request-id", b"traceparent", b"date", b"server", b"content-length", b"connection"}


@dataclass(frozen=True, slots=True)
class Stored:
    """A finished response kept with its key."""

    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes


@dataclass(frozen=True, slots=True)
class Begin:
    """What :meth:`IdempotencyStore.begin` found: ``new``, ``done`` (with ``response``), ``mismatch`` or ``pending``.

    ``claim`` (``new`` only) identifies this claim of the key: :meth:`IdempotencyStore.complete`
    and :meth:`~IdempotencyStore.abandon` given it act only while the claim is still the key's.
    """

    state: str
    response: Stored | None = None
    claim: float | None = None


class IdempotencyStore(Protocol):
    """Where keys and responses are kept. Implementations: :class:`MemoryIdempotencyStore`, :class:`SqlIdempotencyStore`."""

    async def begin(self, key: str, fingerprint: str, *, ttl: float, lock_timeout: float) -> Begin:
        """Claim ``key`` for a request with ``fingerprint``, or say what holds it."""

    async def complete(self, key: str, response: Stored, claim: float | None = None) -> None:
        """Store the response of the request that claimed ``key`` (with ``claim``: only if that claim still holds)."""

    async def abandon(self, key: str, claim: float | None = None) -> None:
        """Free ``key`` (the request failed; a retry may run it); with ``claim``: only if that claim still holds."""


class MemoryIdempotencyStore:
    """Keys in a dict: one process (tests, a single instance)."""

    def __init__(self, *, purge_every: float = 60.0) -> None:
        self._rows: dict[str, tuple[str, float, float, Stored | None]] = {}  # fp, created, expires, response
        self.purge_every = purge_every
        self._purged_at = time.monotonic()

    async def begin(self, key: str, fingerprint: str, *, ttl: float, lock_timeout: float) -> Begin:
        now = time.time()
        if time.monotonic() - self._purged_at >= self.purge_every:  # expired keys leave, now and then
            self._purged_at = time.monotonic()
            for gone in [k for k, r in self._rows.items() if r[2] < now]:
                del self._rows[gone]
        row = self._rows.get(key)
        if row is None or row[2] < now or (row[3] is None and row[1] < now - lock_timeout):
            self._rows[key] = (fingerprint, now, now + ttl, None)
            return Begin("new", claim=now)
        if row[0] != fingerprint:
            return Begin("mismatch")
        return Begin("done", row[3]) if row[3] is not None else Begin("pending")

    async def complete(self, key: str, response: Stored, claim: float | None = None) -> None:
        row = self._rows.get(key)
        if row is not None and (claim is None or row[1] == claim):
            self._rows[key] = (row[0], row[1], row[2], response)

    async def abandon(self, key: str, claim: float | None = None) -> None:
        row = self._rows.get(key)
        if row is not None and row[3] is None and (claim is None or row[1] == claim):
            del self._rows[key]


class SqlIdempotencyStore:
    """Keys in ``<prefix>_idempotency`` (SQLite or PostgreSQL), shared by the service's instances."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], *, prefix: str, purge_every: float = 60.0) -> None:
        self.sessions = sessions
        self.table = tables_for(prefix).idempotency
        self.purge_every = purge_every
        self._purged_at = time.monotonic()

    async def begin(self, key: str, fingerprint: str, *, ttl: float, lock_timeout: float) -> Begin:
        if time.monotonic() - self._purged_at >= self.purge_every:
            await self._purge_some()
        t = self.table
        now = time.time()
        fresh = {"key": key, "fingerprint": fingerprint, "state": "pending", "status": None, "headers": None,
                 "body": None, "created_at": now, "expires_at": now + ttl}
        async with transaction(self.sessions) as session:
            if (await session.execute(insert_ignore(session, t, fresh))).rowcount == 1:  # type: ignore[attr-defined]
                return Begin("new", claim=now)
            row = (await session.execute(select(t).where(t.c.key == key))).mappings().first()
            if row is None:  # expired and purged between the two statements (and maybe claimed again)
                again = await session.execute(insert_ignore(session, t, fresh))
                return Begin("new", claim=now) if again.rowcount == 1 else Begin("pending")  # type: ignore[attr-defined]
            stale = row["expires_at"] < now or (row["state"] == "pending" and row["created_at"] < now - lock_timeout)
            if stale:
                taken = await session.execute(
                    update(t).where(t.c.key == key, t.c.created_at == row["created_at"]).values(**fresh)
                )
                return Begin("new", claim=now) if taken.rowcount == 1 else Begin("pending")  # type: ignore[attr-defined]
            if row["fingerprint"] != fingerprint:
                return Begin("mismatch")
            if row["state"] != "done":
                return Begin("pending")
            headers = [(bytes(k, "latin-1"), bytes(v, "latin-1")) for k, v in orjson.loads(row["headers"] or b"[]")]
            return Begin("done", Stored(row["status"], headers, bytes(row["body"] or b"")))

    async def complete(self, key: str, response: Stored, claim: float | None = None) -> None:
        t = self.table
        headers = orjson.dumps([(k.decode("latin-1"), v.decode("latin-1")) for k, v in response.headers])
        mine = t.c.key == key if claim is None else (t.c.key == key) & (t.c.created_at == claim)
        async with transaction(self.sessions) as session:
            await session.execute(
                update(t).where(mine).values(state="done", status=response.status, headers=headers,
                                             body=response.body)
            )

    async def abandon(self, key: str, claim: float | None = None) -> None:
        t = self.table
        mine = t.c.key == key if claim is None else (t.c.key == key) & (t.c.created_at == claim)
        async with transaction(self.sessions) as session:
            await session.execute(delete(t).where(mine, t.c.state == "pending"))

    async def _purge_some(self) -> None:
        # Every ``purge_every`` seconds, one chunk of expired keys (a full chunk: the next
        # request takes the next one); a failure is logged, never the request's.
        self._purged_at = time.monotonic()
        t = self.table
        try:
            async with transaction(self.sessions) as session:
                gone = await delete_some(session, t, t.c.expires_at < time.time(), limit=_PURGE_CHUNK)
        except Exception as exc:  # the database away: the request's own statements will say so
            logger.warning("idempotency keys: purging expired keys failed (%s); trying again later", exc)
            return
        if gone == _PURGE_CHUNK:
            self._purged_at = 0.0

    async def purge(self) -> int:
        """Delete every expired key now; returns how many."""
        t = self.table
        async with transaction(self.sessions) as session:
            result = await session.execute(delete(t).where(t.c.expires_at < time.time()))
        return int(result.rowcount or 0)  # type: ignore[attr-defined]


class IdempotencyMiddleware:
    """ASGI middleware applying an :class:`IdempotencyStore` to requests carrying ``Idempotency-Key``."""

    def __init__(
        self,
        app: ASGIApp,
        store: IdempotencyStore,
        *,
        ttl: float = 24 * 3600.0,
        wait: float = 5.0,
        lock_timeout: float = 60.0,
        methods: tuple[str, ...] = ("POST",),
    ) -> None:
        self.app = app
        self.store = store
        self.ttl = ttl
        self.wait = wait
        self.lock_timeout = lock_timeout
        self.methods = frozenset(m.upper() for m in methods)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in self.methods:
            await self.app(scope, receive, send)
            return
        raw = next((v for k, v in scope.get("headers", ()) if k == HEADER), None)
        if raw is None:
            await self.app(scope, receive, send)
            return
        key = _check_key(raw)
        body, disconnected = await _read_body(receive)
        if disconnected:  # the client is gone before its request was whole: nothing to run, nothing to claim
            return
        ctx = context.current()
        subject = ctx.identity.subject if ctx is not None and ctx.identity is not None else ""
        scoped = f"{len(subject)}:{subject}:{key}"  # unambiguous, and no NUL (PostgreSQL text refuses it)
        fingerprint = hashlib.sha256(
            b"%s %s?%s\n%s" % (scope["method"].encode(), scope["path"].encode(), scope.get("query_string", b""), body)
        ).hexdigest()
        found = await self._claim(scoped, fingerprint)
        if found.state == "done":
            await _replay(found.response, send)
            return
        if found.state == "mismatch":
            raise Unprocessable(
                "this Idempotency-Key was already used for a different request: use a new key for a new request",
                reason="idempotency_key_reused", details={"key": key},
            )
        if found.state == "pending":
            raise Conflict(
                "a request with this Idempotency-Key is still being processed: retry in a moment",
                reason="idempotency_in_progress", details={"key": key}, headers={"retry-after": "1"},
            )
        await self._run(scope, _replaying_receive(body, receive), send, scoped, found.claim)

    async def _claim(self, key: str, fingerprint: str) -> Begin:
        deadline = time.monotonic() + self.wait
        pause = 0.01
        while True:
            found = await self.store.begin(key, fingerprint, ttl=self.ttl, lock_timeout=self.lock_timeout)
            if found.state != "pending" or time.monotonic() >= deadline:
                return found
            await asyncio.sleep(pause)
            pause = min(pause * 2, 0.2)

    async def _run(self, scope: Scope, receive: Receive, send: Send, key: str, claim: float | None) -> None:
        status = 0
        headers: list[tuple[bytes, bytes]] = []
        chunks: list[bytes] = []

        async def capture(message: Message) -> None:
            nonlocal status, headers
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = [(k.lower(), v) for k, v in message.get("headers", ()) if k.lower() not in _PER_REQUEST]
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, receive, capture)
        except BaseException:
            await self.store.abandon(key, claim)
            raise
        if 0 < status < 500 and status not in _TRY_AGAIN:
            await self.store.complete(key, Stored(status, headers, b"".join(chunks)), claim)
        else:
            await self.store.abandon(key, claim)


def idempotency(store: IdempotencyStore, **options: Any) -> Callable[[ASGIApp], ASGIApp]:
    """The middleware as a wrapper for ``Service(..., middleware=[idempotency(store)])``."""

    def wrap(app: ASGIApp) -> ASGIApp:
        return IdempotencyMiddleware(app, store, **options)

    return wrap


def _check_key(raw: bytes) -> str:
    try:
        key = raw.decode("ascii").strip()
    except UnicodeDecodeError:
        key = ""
    if not key or len(key) > 255 or not key.isprintable():
        raise BadRequest("Idempotency-Key must be 1-255 printable ASCII characters (e.g. a UUID)",
                         reason="bad_idempotency_key")
    return key


async def _read_body(receive: Receive) -> tuple[bytes, bool]:
    """The whole body, and whether the client disconnected before it ended."""
    parts: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return b"".join(parts), True
        parts.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(parts), False


def _replaying_receive(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


async def _replay(response: Stored | None, send: Send) -> None:
    assert response is not None
    headers = [*response.headers, (b"content-length", str(len(response.body)).encode()), (REPLAYED, b"true")]
    await send({"type": "http.response.start", "status": response.status, "headers": headers})
    await send({"type": "http.response.body", "body": response.body})


__all__ = [
    "Begin",
    "IdempotencyMiddleware",
    "IdempotencyStore",
    "MemoryIdempotencyStore",
    "SqlIdempotencyStore",
    "Stored",
    "idempotency",
]
