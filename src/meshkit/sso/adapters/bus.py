"""Publishing revocations on NATS (``sso.revoked``), and an in-memory publisher for tests."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import orjson

log = logging.getLogger("meshkit.sso")


class NatsPublisher:
    """:class:`~meshkit.sso.app.ports.Publisher` on core NATS: ``{"jti", "exp"}`` per revoked token.

    Gateways subscribe (``Authenticator.follow_revocations``); the message is
    flushed before returning, so the gateway usually has it within milliseconds.
    """

    def __init__(self, url: str, subject: str = "sso.revoked") -> None:
        self.url = url
        self.subject = subject
        self._nc: Any = None

    async def start(self, timeout: float = 10.0) -> None:
        """Connect (reconnecting forever once up); :class:`Unavailable` if NATS does not answer in ``timeout``."""
        import nats

        from meshkit.basis.errors import Unavailable

        try:
            # nats-py retries the first connection forever with unlimited reconnects: bound it here.
            self._nc = await asyncio.wait_for(
                nats.connect(self.url, name="meshkit-sso", max_reconnect_attempts=-1, connect_timeout=2), timeout)
        except (TimeoutError, OSError) as exc:
            raise Unavailable(f"NATS at {self.url} did not answer within {timeout:g} s: revocations cannot be "
                              "published; start NATS (meshkit up does) or set MESHKIT_NATS_URL",
                              reason="nats_unavailable") from exc

    async def revoked(self, jti: str, exp: float) -> None:
        if self._nc is None:
            raise RuntimeError("the revocation publisher is not started")
        await self._nc.publish(self.subject, orjson.dumps({"jti": jti, "exp": exp}))
        try:
            await self._nc.flush(timeout=1)
        except Exception as exc:  # published to the client buffer; it goes out on reconnect
            log.warning("revocation of %s not flushed to NATS yet: %s", jti, exc)

    async def follow(self, on_revoked: Any) -> None:
        """Call ``on_revoked(jti, exp)`` for every revocation on the subject, ours and other SSO instances'.

        Keeps every instance's list of revoked tokens (checked by ``/userinfo``
        and the admin API) in step without a database read per request.
        """

        async def handle(msg: Any) -> None:
            try:
                doc = orjson.loads(msg.data)
                on_revoked(str(doc["jti"]), float(doc["exp"]))
            except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
                log.warning("ignoring a bad message on %s: %s", self.subject, exc)

        await self._nc.subscribe(self.subject, cb=handle)

    async def close(self) -> None:
        if self._nc is not None:
            nc, self._nc = self._nc, None
            await nc.drain()


class MemoryPublisher:
    """Collects revocations in a list (unit tests)."""

    def __init__(self) -> None:
        self.published: list[tuple[str, float]] = []

    async def revoked(self, jti: str, exp: float) -> None:
        self.published.append((jti, exp))
