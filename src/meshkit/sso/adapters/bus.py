"""Token revocations on the SSO's JetStream stream, and an in-memory publisher for tests.

The SSO publishes :class:`~meshkit.sso_sdk.events.TokenRevoked` on
``sso.token.revoked`` (stream ``SSO``) in a CloudEvents envelope whose id is the
token's ``jti``: a retried publish is stored once. Every SSO instance and every
gateway follows the stream with a consumer of its own, from the stream's start:
one that was down, or started later, still learns every revocation of a token
that is alive. The stream keeps messages ``SSO_REVOCATION_RETENTION`` seconds;
the SSO, its owner, sets that on start.

The revocations table is the record; the stream carries it. A publish that
fails (NATS away) is retried in the background until it goes through or the
token expires, and on start each SSO instance republishes the stored
revocations the stream does not hold — so a revocation is never lost between
the two, and a logout never fails for want of NATS.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

from nats.js.errors import NotFoundError

from meshkit.basis.bus import Bus, Envelope, Follower
from meshkit.basis.errors import Unavailable
from meshkit.sso.app.tokens import LEEWAY
from meshkit.sso_sdk.events import EVENTS, STREAM, TOKEN_REVOKED, TokenRevoked, revocation_stream

log = logging.getLogger("meshkit.sso")

#: What the SSO puts on the bus and what it follows there (also what its AsyncAPI document lists).
PUBLISHES = EVENTS
FOLLOWS = TOKEN_REVOKED


class BusPublisher:
    """:class:`~meshkit.sso.app.ports.Publisher` on JetStream, and the follower of the same stream."""

    def __init__(self, url: str, *, source: str = "sso", retention: float, publish_timeout: float = 5.0,
                 retry_interval: float = 1.0, grace: float = LEEWAY, clock: Callable[[], float] = time.time) -> None:
        self.stream = revocation_stream(retention)
        self.bus = Bus(url, source=source, streams=[self.stream], publish_timeout=publish_timeout)
        self.bus.publishes(*PUBLISHES)
        self.bus.declare_follow(FOLLOWS)
        self.retry_interval = retry_interval
        #: A revocation matters until its token's exp plus this (tokens verify that long past exp).
        self.grace = grace
        self._clock = clock
        self.follower: Follower | None = None
        # jti of every revocation read from the stream, until republish_missing() compared them with the table
        self._seen: set[str] | None = set()
        self._unsent: dict[str, float] = {}  # jti -> exp of publishes that failed, retried in the background
        self._retrying: asyncio.Task[None] | None = None

    async def start(self, timeout: float = 10.0) -> None:
        """Connect, make sure the ``SSO`` stream exists with our retention; :class:`Unavailable` without NATS."""
        try:
            await asyncio.wait_for(self.bus.connect(timeout=min(timeout, 2.0)), timeout)
        except TimeoutError as exc:
            await self.bus.close()
            raise Unavailable(f"NATS at {self.bus.url} did not answer within {timeout:g} s: revocations cannot be "
                              "published; start NATS (meshkit up does) or set MESHKIT_NATS_URL",
                              reason="nats_unavailable") from exc
        except Unavailable:
            await self.bus.close()
            raise
        await self._apply_retention()

    async def _apply_retention(self) -> None:
        # ensure_stream creates a missing stream but leaves an existing one's limits alone (a gateway
        # may have created it with the default): the owner sets them.
        try:
            info = await self.bus.js.stream_info(STREAM)
        except NotFoundError:
            return
        config = info.config
        want = self.stream.max_age
        if config.max_age and abs(config.max_age - want) < 0.5:
            return
        log.info("stream %s: retention %s -> %g s", STREAM, f"{config.max_age:g} s" if config.max_age else "none", want)
        config.max_age = want
        config.duplicate_window = min(config.duplicate_window or self.stream.duplicate_window, want)
        await self.bus.js.update_stream(config)

    # -- publishing ----------------------------------------------------------------------

    async def revoked(self, jti: str, exp: float) -> None:
        """Publish the revocation (event id = ``jti``); on failure, keep retrying it in the background."""
        if not self.bus.connected:
            self._later(jti, exp, "NATS is not connected")
            return
        try:
            await self.bus.publish(TokenRevoked(jti=jti, exp=exp), id=jti)
        except Exception as exc:
            self._later(jti, exp, getattr(exc, "message", None) or str(exc) or type(exc).__name__)

    def _later(self, jti: str, exp: float, why: str) -> None:
        log.warning("revocation of token %s not on the bus yet (%s); retrying in the background", jti, why)
        self._unsent[jti] = exp
        if self._retrying is None or self._retrying.done():
            self._retrying = asyncio.get_running_loop().create_task(self._retry(), name="sso-revocations-retry")

    async def _retry(self) -> None:
        delay = self.retry_interval
        while self._unsent:
            await asyncio.sleep(delay)
            for jti, exp in list(self._unsent.items()):
                if exp + self.grace <= self._clock():
                    self._unsent.pop(jti, None)  # the token no longer verifies anywhere: nobody needs it
                    continue
                try:
                    await self.bus.publish(TokenRevoked(jti=jti, exp=exp), id=jti)
                except Exception:
                    delay = min(delay * 2, 30.0)
                    break
                self._unsent.pop(jti, None)
                log.info("revocation of token %s published after a retry", jti)
            else:
                delay = self.retry_interval

    async def republish_missing(self, stored: Iterable[tuple[str, float]]) -> int:
        """Publish the stored revocations the stream does not hold (call after the replay); returns how many."""
        now, seen = self._clock(), self._seen or set()
        self._seen = None  # from now on the stream only brings what we and the other instances publish
        missing = [(jti, exp) for jti, exp in stored if exp + self.grace > now and jti not in seen]
        for jti, exp in missing:
            await self.revoked(jti, exp)
        if missing:
            log.warning("republished %d stored revocation(s) missing from stream %s", len(missing), STREAM)
        return len(missing)

    # -- following -----------------------------------------------------------------------

    async def follow(self, on_revoked: Callable[[str, float], Any], *, replay_timeout: float = 10.0) -> bool:
        """Call ``on_revoked(jti, exp)`` for every revocation in the stream, then for each new one.

        Keeps every instance's list of revoked tokens (checked by ``/userinfo`` and
        the admin API) in step without a database read per request. Returns once the
        stored ones are applied (``False``: not within ``replay_timeout``; they keep coming).
        """

        async def handle(env: Envelope) -> None:
            event = env.data
            if not isinstance(event, TokenRevoked):
                raise ValueError(f"expected a {TOKEN_REVOKED} event, got type {env.type!r} with data {event!r:.100}")
            if self._seen is not None:
                self._seen.add(event.jti)
            on_revoked(event.jti, event.exp)

        self.follower = await self.bus.follow(FOLLOWS, handle, stream=self.stream, name="sso-revocations")
        done = await self.follower.wait_replayed(replay_timeout)
        if not done:
            log.warning("stream %s not replayed within %g s; its revocations keep arriving", STREAM, replay_timeout)
        return done

    async def close(self) -> None:
        """Stop retrying and following; close the connection."""
        if self._retrying is not None:
            self._retrying.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._retrying
        if self._unsent:
            log.warning("%d revocation(s) not published before stopping; the next SSO start republishes them",
                        len(self._unsent))
        await self.bus.close()


class MemoryPublisher:
    """Collects revocations in a list (unit tests)."""

    def __init__(self) -> None:
        self.published: list[tuple[str, float]] = []

    async def revoked(self, jti: str, exp: float) -> None:
        self.published.append((jti, exp))
