"""The bus: publish typed events on JetStream and run handlers as durable consumers.

::

    bus = Bus(settings.nats_url, source="search")
    bus.publishes(ProductIndexed)                       # declared: stream ensured, listed in AsyncAPI

    @bus.handler("catalog.product.*", durable="search")
    async def on_product(event: Envelope) -> Outcome | None:
        index(event.data.product)                       # event.data is the typed model

    await bus.connect(); await bus.start()              # or use_bus(service) to tie it to a Service
    await bus.publish(ProductIndexed(id="p1"))

    follower = await bus.follow("sso.token.revoked", on_revoked)   # every event, in this process too

Publishing sets ``Nats-Msg-Id`` to the event id, so a publish retried within
the stream's duplicate window is stored once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, Literal

import nats
from nats.aio.client import Client as NATS
from nats.errors import TimeoutError as NatsTimeout
from nats.js import JetStreamContext
from nats.js.api import PubAck

from meshkit.basis.bus.backoff import RetryPolicy
from meshkit.basis.bus.consumer import Consumer, Handler, HandlerSpec, Start, start_policy
from meshkit.basis.bus.dlq import DeadLetter, list_dead_letters, replay_dead_letter
from meshkit.basis.bus.envelope import Envelope, Event, envelope
from meshkit.basis.bus.follow import HEARTBEAT, Follower, FollowHandler
from meshkit.basis.bus.follow import follow as start_follower
from meshkit.basis.bus.replay import replay_stream
from meshkit.basis.bus.streams import DLQ, StreamSpec, ensure_stream, stream_for
from meshkit.basis.errors import ConfigError, Unavailable

if TYPE_CHECKING:
    from meshkit.basis.service import Service

#: nats-py's ways of saying the server cannot take a message now (closed, reconnecting,
#: buffer full, no JetStream answering): a publish then fails as Unavailable (503), not a 500.
_AWAY = (nats.errors.ConnectionClosedError, nats.errors.ConnectionDrainingError, nats.errors.NoServersError,
         nats.errors.ConnectionReconnectingError, nats.errors.NoRespondersError, nats.errors.StaleConnectionError,
         nats.errors.OutboundBufferLimitError)

logger = logging.getLogger("meshkit.bus")


def subject_matches(pattern: str, subject: str) -> bool:
    """NATS wildcard matching: ``*`` is one token, a final ``>`` one or more."""
    p, s = pattern.split("."), subject.split(".")
    for i, token in enumerate(p):
        if token == ">":
            return len(s) > i
        if i >= len(s) or (token != "*" and token != s[i]):
            return False
    return len(p) == len(s)


def _durable_name(text: str) -> str:
    bad = [c for c in text if not (c.isalnum() or c in "_-")]
    if bad or not text:
        raise ConfigError(f"durable name {text!r} may hold only letters, digits, '_' and '-'")
    return text


class Bus:
    """A connection to JetStream with the streams, publishers and handlers of one service."""

    def __init__(self, url: str, *, source: str, streams: Iterable[StreamSpec] = (), publish_timeout: float = 5.0) -> None:
        self.url = url
        self.source = source
        self.publish_timeout = publish_timeout
        self.nc: NATS | None = None
        self._js: JetStreamContext | None = None
        self._streams: dict[str, StreamSpec] = {s.name: s for s in streams}
        self._ensured: set[str] = set()
        self.published: dict[str, type[Event]] = {}
        self.specs: list[HandlerSpec] = []
        self.consumers: list[Consumer] = []
        #: Patterns this bus follows (see :meth:`follow`), for the AsyncAPI document.
        self.follows: list[str] = []
        self.followers: list[Follower] = []

    # -- declaration ----------------------------------------------------------------------

    def publishes(self, *events: type[Event]) -> None:
        """Declare the event classes this service publishes (their streams are ensured on connect)."""
        for cls in events:
            if not cls.type_name:
                raise ConfigError(f"{cls.__qualname__} has no type_name")
            self.published[cls.type_name] = cls
            self._add_stream(stream_for(cls.type_name))

    def handler(
        self,
        pattern: str,
        *,
        durable: str | None = None,
        retry: RetryPolicy | None = None,
        concurrency: int = 1,
        start: Start = "all",
        ack_wait: float = 30.0,
        batch: int = 64,
        timeout: float | None = None,
    ) -> Callable[[Handler], Handler]:
        """Decorator: run the function for every event on ``pattern`` (NATS wildcards).

        All instances with the same ``durable`` (default ``<source>-<function name>``)
        share one consumer, so each event reaches one of them. ``start`` says where a
        new consumer begins: ``"all"`` (default), ``"new"`` or a datetime. ``timeout``:
        seconds the handler may take per event (default ``ack_wait``), then it is
        cancelled and the delivery fails; meanwhile the event is not redelivered.
        """

        def register(fn: Handler) -> Handler:
            self.subscribe(pattern, fn, durable=durable, retry=retry, concurrency=concurrency,
                           start=start, ack_wait=ack_wait, batch=batch, timeout=timeout)
            return fn

        return register

    def subscribe(
        self,
        pattern: str,
        fn: Handler,
        *,
        durable: str | None = None,
        retry: RetryPolicy | None = None,
        concurrency: int = 1,
        start: Start = "all",
        ack_wait: float = 30.0,
        batch: int = 64,
        timeout: float | None = None,
    ) -> HandlerSpec:
        """The non-decorator form of :meth:`handler`; returns the consumer's spec."""
        stream = stream_for(pattern)
        if stream.name == DLQ.name:  # each letter would be unreadable as an event: dead-lettered into the DLQ again
            raise ConfigError(f"a handler cannot consume dead letters ({pattern!r}): they are not events; read them "
                              "with list_dead_letters / get_dead_letter (or `meshkit dlq`)")
        self._add_stream(stream)
        name = _durable_name(durable or f"{self.source}-{getattr(fn, '__name__', 'handler')}".replace("_", "-"))
        if any(s.durable == name for s in self.specs):
            raise ConfigError(f"two handlers share the durable name {name!r}: give one another durable=")
        start_policy(start)  # fail now on a bad value
        spec = HandlerSpec(pattern=pattern, durable=name, fn=fn, stream=stream.name, retry=retry or RetryPolicy(),
                           concurrency=concurrency, start=start, ack_wait=ack_wait, batch=batch, timeout=timeout)
        self.specs.append(spec)
        if self.consumers:  # already running: start this one too
            task = asyncio.get_running_loop().create_task(self._start_one(spec))
            task.add_done_callback(lambda t: t.exception())
        return spec

    def _add_stream(self, spec: StreamSpec) -> None:
        if spec.name not in self._streams:
            self._streams[spec.name] = spec

    # -- connection -----------------------------------------------------------------------

    @property
    def js(self) -> JetStreamContext:
        """The JetStream context (after :meth:`connect`)."""
        if self._js is None:
            raise Unavailable("the bus is not connected: call `await bus.connect()` first", reason="bus_not_connected")
        return self._js

    @property
    def connected(self) -> bool:
        return self.nc is not None and self.nc.is_connected

    async def connect(self, *, timeout: float = 5.0) -> Bus:
        """Connect (reconnecting forever afterwards) and ensure the declared streams and ``DLQ``."""
        if self.nc is not None:
            return self
        try:
            self.nc = await nats.connect(
                self.url, name=self.source, connect_timeout=timeout, max_reconnect_attempts=-1,
                reconnect_time_wait=0.5, allow_reconnect=True, error_cb=_quiet, disconnected_cb=self._disconnected,
            )
        except Exception as exc:
            raise Unavailable(f"cannot reach NATS at {self.url}: {exc}; is it running (meshkit up)?",
                              reason="bus_unavailable") from exc
        self._js = self.nc.jetstream(timeout=timeout)
        for spec in (DLQ, *self._streams.values()):
            await self.ensure(spec)
        return self

    async def _disconnected(self) -> None:
        if self.nc is not None:  # not when we close it ourselves (close() drops nc first)
            logger.warning("nats: disconnected; reconnecting")

    async def ensure(self, spec: StreamSpec) -> None:
        """Create or update ``spec``'s stream (once per bus)."""
        if spec.name not in self._ensured:
            await ensure_stream(self.js, spec)
            self._ensured.add(spec.name)

    async def ensure_for(self, subject: str) -> None:
        """Ensure the stream of ``subject``'s bounded context."""
        spec = self._streams.get(stream_for(subject).name) or stream_for(subject)
        await self.ensure(spec)

    async def start(self) -> None:
        """Start a consumer for every handler (connects first if needed)."""
        await self.connect()
        for spec in self.specs:
            if not any(c.spec is spec for c in self.consumers):
                await self._start_one(spec)

    async def _start_one(self, spec: HandlerSpec) -> None:
        consumer = Consumer(self.js, spec)
        await consumer.start()
        self.consumers.append(consumer)

    async def stop(self) -> None:
        """Stop the consumers (each finishes the messages in hand) and the followers."""
        consumers, self.consumers = self.consumers, []
        followers, self.followers = self.followers, []
        await asyncio.gather(*(c.stop() for c in consumers), *(f.stop() for f in followers), return_exceptions=True)

    # -- followers ------------------------------------------------------------------------

    def declare_follow(self, pattern: str) -> None:
        """Note that this service follows ``pattern`` (listed in the AsyncAPI document) without connecting."""
        if pattern not in self.follows:
            self.follows.append(pattern)

    async def follow(self, pattern: str, fn: FollowHandler, *, stream: StreamSpec | None = None,
                     start: Literal["all", "new"] = "all", name: str = "", heartbeat: float = HEARTBEAT) -> Follower:
        """Call ``fn`` in this process for every event on ``pattern``: the stored ones, then each new one.

        Unlike :meth:`handler` nothing is shared with other instances: each one gets
        every event (see :mod:`meshkit.basis.bus.follow`). The stream is ensured
        first (``stream``, or the one of ``pattern``'s context). Stopped by :meth:`stop`.
        """
        spec = stream or self._streams.get(stream_for(pattern).name) or stream_for(pattern)
        await self.ensure(spec)
        self.declare_follow(pattern)
        follower = await start_follower(self.js, pattern, fn, stream=spec.name, start=start,
                                        name=name or f"{self.source}:{pattern}", heartbeat=heartbeat)
        self.followers.append(follower)
        return follower

    async def close(self) -> None:
        """Stop the consumers, flush and close the connection."""
        await self.stop()
        nc, self.nc, self._js = self.nc, None, None
        self._ensured.clear()
        if nc is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(nc.drain(), 2.0)
            with contextlib.suppress(Exception):
                await nc.close()

    # -- publishing -----------------------------------------------------------------------

    async def publish(self, event: Event | Envelope, *, subject: str | None = None, id: str | None = None) -> PubAck:
        """Publish one event on its type's subject (or ``subject``) and wait for JetStream's ack."""
        env = envelope(event, source=self.source, id=id)
        return await self.publish_envelope(env, subject=subject)

    async def publish_envelope(self, env: Envelope, *, subject: str | None = None) -> PubAck:
        """Publish an already built envelope (the outbox relay and the event store use this)."""
        target = subject or env.type
        try:
            await self.ensure_for(target)
            return await self.js.publish(target, env.to_json(), timeout=self.publish_timeout,
                                         headers={"Nats-Msg-Id": env.id})
        except (NatsTimeout, TimeoutError) as exc:
            raise Unavailable(f"JetStream did not acknowledge event {env.id} in time; publish again "
                              "(the event id makes it a no-op if it was stored)", reason="bus_timeout") from exc
        except _AWAY as exc:
            raise Unavailable(f"NATS cannot take event {env.id} now ({type(exc).__name__}); publish again "
                              "once it is back (the event id makes a repeat a no-op)", reason="bus_unavailable") from exc

    def asyncapi(self, version: str, *, description: str = "") -> dict[str, Any]:
        """The AsyncAPI document of what this bus publishes and consumes (declared event classes)."""
        from meshkit.basis.bus.asyncapi import document
        from meshkit.basis.bus.envelope import _TYPES

        patterns = list(dict.fromkeys([*(s.pattern for s in self.specs), *self.follows]))
        consumes = [(p, [c for name, c in _TYPES.items() if subject_matches(p, name)]) for p in patterns]
        return document(self.source, version, publishes=self.published.values(), consumes=consumes,
                        description=description)

    # -- replay and dead letters ----------------------------------------------------------

    async def replay(self, pattern: str, fn: Handler, *, start: Start = "all", batch: int = 256) -> int:
        """Feed every stored event on ``pattern`` from ``start`` (``"all"`` or a datetime) to ``fn``, in order.

        For rebuilding: runs to the end of the stream as it was when called and returns
        the number of events given to ``fn``; no durable state is touched. A message that
        is not an event envelope is logged and skipped (the consumers dead-lettered it).
        """
        await self.ensure_for(pattern)
        return await replay_stream(self.js, pattern, fn, start=start, batch=batch)

    async def rewind(self, durable: str, *, start: Start = "all") -> None:
        """Move a durable consumer back to ``start`` (delete and recreate it); restart the bus's consumer."""
        spec = next((s for s in self.specs if s.durable == durable), None)
        if spec is None:
            raise ConfigError(f"no handler with durable {durable!r} on this bus")
        running = next((c for c in self.consumers if c.spec is spec), None)
        if running is not None:
            await running.stop()
            self.consumers.remove(running)
        with contextlib.suppress(Exception):
            await self.js.delete_consumer(spec.stream, durable)
        spec.start = start
        if running is not None:
            await self._start_one(spec)

    async def dead_letters(self, *, consumer: str | None = None, limit: int = 100) -> list[DeadLetter]:
        """Dead letters (see :func:`meshkit.basis.bus.dlq.list_dead_letters`)."""
        return await list_dead_letters(self.js, consumer=consumer, limit=limit)

    async def replay_dead_letter(self, seq: int) -> DeadLetter:
        """Republish a dead letter's event and delete the letter."""
        return await replay_dead_letter(self.js, seq)


async def _quiet(exc: Exception) -> None:
    logger.debug("nats: %s", exc)


def use_bus(service: Service, *, streams: Iterable[StreamSpec] = (), required: bool = True) -> Bus:
    """A :class:`Bus` tied to ``service``'s lifecycle, in ``service.state["bus"]``.

    Connects and starts the handlers on start-up (after the hooks added before this
    call, e.g. migrations), stops and closes on shutdown. ``required=True`` makes NATS
    a readiness dependency (check ``bus``) and start-up fails without it. A service
    that only publishes through its outbox passes ``required=False``: it starts and
    serves without NATS, and connects in the background whenever NATS is there.
    """
    bus = Bus(service.settings.nats_url, source=service.name, streams=streams)
    service.state["bus"] = bus
    background: list[asyncio.Task[None]] = []

    async def keep_connecting() -> None:
        while True:
            try:
                await bus.start()
                return
            except Exception as exc:
                logger.info("bus: %s; trying again in 1s", exc)
                await bus.close()
                await asyncio.sleep(1.0)

    async def start(_service: Any) -> None:
        if required:
            await bus.start()
        else:
            background.append(asyncio.create_task(keep_connecting(), name="meshkit-bus-connect"))

    async def stop(_service: Any) -> None:
        for task in background:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await bus.close()

    async def check() -> None:
        if not bus.connected:
            raise RuntimeError("not connected to NATS")

    service.on_startup(start)
    service.on_shutdown(stop)
    if required:
        service.add_check("bus", check)
    return bus


__all__ = ["Bus", "subject_matches", "use_bus"]
