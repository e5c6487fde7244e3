"""Revoked token ids, kept until the tokens they name would have expired anyway.

The SSO publishes each revocation as a :class:`~meshkit.sso_sdk.events.TokenRevoked`
event (``{"jti", "exp"}`` in a CloudEvents envelope) on ``sso.token.revoked``,
JetStream stream ``SSO``, which keeps them as long as a token can live.
:func:`follow` gives a :class:`RevocationList` an ordered consumer of this
gateway's own that replays the stream from its start and then follows it live,
so every gateway — also one that was down, or started after the revocation —
rejects a revoked token, within the bus latency, even while the token is in the
verification cache. Malformed events are logged and skipped.
"""

from __future__ import annotations

import heapq
import logging
import time
from collections.abc import Callable
from typing import Any

log = logging.getLogger("meshkit.gateway.security")

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


async def follow(nc: Any, revoked: RevocationList, *, grace: float = 0.0, replay_timeout: float = 5.0) -> Any:
    """Apply the SSO's revocations to ``revoked``, on the connected NATS client ``nc``; returns the follower.

    Replays stream ``SSO`` from its start, then follows it live. Returns once the
    stored revocations are applied (after ``replay_timeout`` seconds at most, with
    a warning: they keep arriving). Each token id is refused until its ``exp`` plus
    ``grace`` (the verifier's leeway: a token is accepted that long past ``exp``).
    A missing stream is created with the SDK's default retention (the SSO sets its own).
    """
    from meshkit.basis.bus import Envelope, ensure_stream
    from meshkit.basis.bus import follow as follow_stream
    from meshkit.sso_sdk.events import STREAM, TOKEN_REVOKED, TokenRevoked, revocation_stream

    async def on_event(env: Envelope) -> None:
        event = env.data
        if not isinstance(event, TokenRevoked):
            raise ValueError(f"expected a {TOKEN_REVOKED} event, got type {env.type!r} with data {event!r:.100}")
        revoked.add(event.jti, event.exp + grace)

    js = nc.jetstream()
    await ensure_stream(js, revocation_stream())
    follower = await follow_stream(js, TOKEN_REVOKED, on_event, stream=STREAM, name="gateway-revocations")
    if not await follower.wait_replayed(replay_timeout):
        log.warning("revocations: stream %s not replayed within %g s; the rest keeps arriving", STREAM,
                    replay_timeout)
    return follower
