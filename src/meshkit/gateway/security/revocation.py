"""Revoked token ids, kept until the tokens they name would have expired anyway.

The SSO publishes each revocation on NATS subject ``sso.revoked`` as JSON
``{"jti": "...", "exp": 1700000000}``; :func:`follow` subscribes a
:class:`RevocationList` to it so every gateway rejects a revoked token within
the bus latency, even while the token is in the verification cache.

Plain core NATS: a gateway that was down while a revocation was published
misses it (JetStream replay is the SSO's to add when it lands).
"""

from __future__ import annotations

import heapq
import logging
import time
from collections.abc import Callable
from typing import Any

import orjson

log = logging.getLogger("meshkit.gateway.security")

SUBJECT = "sso.revoked"
#: How long to remember a revocation that did not say when its token expires.
DEFAULT_TTL = 24 * 3600.0


class RevocationList:
    """A set of token ids with expiry: ``jti in revoked`` is true until its ``until``."""

    def __init__(self, *, clock: Callable[[], float] = time.time, max_entries: int = 1_000_000) -> None:
        self._until: dict[str, float] = {}
        self._expiry: list[tuple[float, str]] = []  # min-heap, for pruning in order
        self._clock = clock
        self.max_entries = max_entries

    def add(self, jti: str, until: float | None = None) -> None:
        """Revoke ``jti`` until ``until`` (epoch seconds; default: a day from now)."""
        now = self._clock()
        until = now + DEFAULT_TTL if until is None else float(until)
        if until <= now:
            return  # the token has expired already: nothing to reject
        if until > self._until.get(jti, 0.0):
            self._until[jti] = until
            heapq.heappush(self._expiry, (until, jti))
        self.prune(now)

    def __contains__(self, jti: object) -> bool:
        until = self._until.get(jti)  # type: ignore[arg-type]
        if until is None:
            return False
        if self._clock() >= until:
            del self._until[jti]  # type: ignore[arg-type]
            return False
        return True

    def prune(self, now: float | None = None) -> None:
        """Forget revocations whose tokens have expired; stay under ``max_entries``."""
        now = self._clock() if now is None else now
        heap = self._expiry
        while heap and (heap[0][0] <= now or len(self._until) > self.max_entries):
            until, jti = heapq.heappop(heap)
            if self._until.get(jti) == until:
                if until > now:
                    log.error("revocation list full (%d): forgetting %s early", self.max_entries, jti)
                del self._until[jti]

    def __len__(self) -> int:
        return len(self._until)


def parse_message(data: bytes) -> tuple[str, float | None]:
    """``(jti, exp)`` from one ``sso.revoked`` message; ``ValueError`` if it is not one."""
    msg: Any = orjson.loads(data)
    jti = msg.get("jti") if isinstance(msg, dict) else None
    if not isinstance(jti, str) or not jti:
        raise ValueError("revocation message needs a string 'jti'")
    exp = msg.get("exp")
    if exp is not None and (isinstance(exp, bool) or not isinstance(exp, (int, float))):
        raise ValueError("revocation 'exp' must be epoch seconds")
    return jti, exp


async def follow(nc: Any, revoked: RevocationList, subject: str = SUBJECT) -> Any:
    """Subscribe ``revoked`` to ``subject`` on the connected NATS client ``nc``; returns the subscription."""

    async def on_message(msg: Any) -> None:
        try:
            jti, exp = parse_message(msg.data)
        except (ValueError, orjson.JSONDecodeError) as exc:
            log.warning("ignoring bad message on %s: %s", subject, exc)
            return
        revoked.add(jti, exp)

    sub = await nc.subscribe(subject, cb=on_message)
    await nc.flush()  # the subscription is live on the server when we return
    return sub
