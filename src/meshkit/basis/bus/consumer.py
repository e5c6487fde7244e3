"""Durable pull consumers: one per handler, shared by all instances of a service.

Every instance of a service binds the same durable consumer, so JetStream hands
each event to exactly one of them. A message is acknowledged explicitly after
its handler returns; on an exception or a ``Retry`` it is negatively
acknowledged with a growing delay; the delivery that reaches
``RetryPolicy.max_deliveries`` publishes a dead letter (original event, error,
delivery count) to the ``DLQ`` stream and terminates the message — except a
failure that is :class:`~meshkit.basis.errors.Unavailable` (a database or service
the handler needs is away), which is retried for as long as it lasts. The handler
runs with a :class:`~meshkit.basis.context.RequestContext` bound that continues
the publisher's trace (``traceparent``) and has the event id as request id.

Slow handlers. While a message is in hand — being handled, or fetched and
waiting for the ones before it — the consumer tells JetStream every
``ack_wait / 3`` that it is still working on it (``+WPI``), so the server does
not hand it to another instance meanwhile (which would run the handler twice
at once). ``ack_wait`` is then only how long a crashed instance holds its
messages. A handler gets ``timeout`` seconds (default: ``ack_wait``); one
that takes longer is cancelled and the delivery counts as failed (retried,
then dead-lettered), so a hung handler cannot hold its consumer forever. A
handler's ``BaseException`` that is not a stop of the process (not
``KeyboardInterrupt``/``SystemExit``, not the consumer's own cancellation) is
a failure like any other exception.

A handler may also take whole batches: when it has a ``batch`` attribute (an
async ``batch(events) -> outcomes``, one outcome per event, an exception
standing for a failure), the consumer hands it every fetched batch at once and
settles each message afterwards by its outcome. The inbox's handlers do this to
apply a batch in one database transaction (see :mod:`meshkit.basis.inbox`);
``concurrency`` does not apply to them (a batch runs in order, in one call).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from nats.aio.msg import Msg
from nats.errors import TimeoutError as NatsTimeout
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError

from meshkit.basis.bus.backoff import RetryPolicy
from meshkit.basis.bus.dlq import letter_body
from meshkit.basis.bus.envelope import Envelope
from meshkit.basis.bus.handling import event_context, is_failure
from meshkit.basis.bus.pace import Pace
from meshkit.basis.bus.signals import Ack, Drop, Outcome, Retry
from meshkit.basis.bus.streams import DLQ_PREFIX
from meshkit.basis.errors import MeshkitError, Unavailable

logger = logging.getLogger("meshkit.bus")

Handler = Callable[[Envelope], Awaitable[Outcome | None]]
#: What ``handler.batch(events)`` answers: one outcome per event, in order (an exception is a failure).
BatchOutcomes = Sequence[Outcome | BaseException | None]
#: Where a new durable consumer starts: ``"all"`` (the whole stream), ``"new"``, or a time.
Start = str | datetime


@dataclass(slots=True)
class HandlerSpec:
    """A handler and its consumer settings (see :meth:`meshkit.basis.bus.Bus.handler`)."""

    pattern: str
    durable: str
    fn: Handler
    stream: str
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    concurrency: int = 1
    batch: int = 64
    ack_wait: float = 30.0
    start: Start = "all"
    #: Largest number of unacknowledged messages across all instances (JetStream's max_ack_pending).
    max_ack_pending: int = 1000
    #: Batch handlers only: while events arrive faster than ``eager_rate`` a second, fetch at most
    #: every ``linger`` seconds, so a steady stream is applied in batches of several events (one
    #: transaction each) rather than one; slower, fetch again at once (each event is applied
    #: within a round trip instead of waiting up to ``linger``).
    linger: float = 0.01
    eager_rate: float = 250.0
    #: Seconds a handler may take per event (``None``: ``ack_wait``); then it is cancelled and the delivery fails.
    timeout: float | None = None

    @property
    def time_limit(self) -> float:
        """The handler's time per event (``timeout``, else ``ack_wait``)."""
        return self.timeout if self.timeout is not None else self.ack_wait


def consumer_config(spec: HandlerSpec) -> ConsumerConfig:
    """The JetStream configuration of the durable consumer behind ``spec``."""
    config = ConsumerConfig(
        durable_name=spec.durable,
        filter_subject=spec.pattern,
        ack_policy=AckPolicy.EXPLICIT,
        ack_wait=spec.ack_wait,
        # Unbounded on the server: we count deliveries and dead-letter ourselves,
        # so the event is never silently dropped by the server.
        max_deliver=-1,
        max_ack_pending=spec.max_ack_pending,
    )
    config.deliver_policy, config.opt_start_time = start_policy(spec.start)
    return config


def start_policy(start: Start) -> tuple[DeliverPolicy, datetime | None]:
    """``(deliver policy, start time)`` for ``"all"``, ``"new"``, ``"last"`` or a datetime."""
    if isinstance(start, datetime):
        return DeliverPolicy.BY_START_TIME, start.astimezone(UTC)
    policies = {"all": DeliverPolicy.ALL, "new": DeliverPolicy.NEW, "last": DeliverPolicy.LAST}
    if start not in policies:
        raise ValueError(f"start must be 'all', 'new', 'last' or a datetime, not {start!r}")
    return policies[start], None


class Consumer:
    """Runs one :class:`HandlerSpec`: fetches batches, calls the handler, acks, retries, dead-letters."""

    def __init__(self, js: JetStreamContext, spec: HandlerSpec) -> None:
        self.js = js
        self.spec = spec
        self.handled = 0
        self.retried = 0
        self.dead = 0
        self._sub: Any = None
        self._task: asyncio.Task[None] | None = None
        self._keeper: asyncio.Task[None] | None = None
        self._in_hand: dict[int, Msg] = {}  # fetched, not settled yet: kept alive with +WPI
        self._stopping = False
        self._fetching = False
        self._limit = asyncio.Semaphore(max(1, spec.concurrency))

    async def start(self) -> None:
        """Create the durable consumer if it is missing and start fetching."""
        await ensure_consumer(self.js, self.spec.stream, consumer_config(self.spec))
        self._sub = await self.js.pull_subscribe_bind(self.spec.durable, stream=self.spec.stream)
        self._stopping = False
        self._task = asyncio.create_task(self._loop(), name=f"meshkit-consumer-{self.spec.durable}")
        self._keeper = asyncio.create_task(self._keep_alive(), name=f"meshkit-consumer-wpi-{self.spec.durable}")

    async def stop(self, timeout: float = 10.0) -> None:
        """Finish the messages in hand (up to ``timeout``), then stop fetching."""
        self._stopping = True
        task, self._task = self._task, None
        if task is None:
            return
        if self._fetching:
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError, TimeoutError):
            await asyncio.wait_for(task, timeout)
        keeper, self._keeper = self._keeper, None
        if keeper is not None:
            keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await keeper
        self._in_hand.clear()
        if self._sub is not None:
            with contextlib.suppress(Exception):
                await self._sub.unsubscribe()
            self._sub = None

    async def _loop(self) -> None:
        pause = 0.1
        started = 0.0
        fetched = 0  # messages the last fetch brought
        pace = Pace(self.spec.eager_rate)
        batch = getattr(self.spec.fn, "batch", None)
        while not self._stopping:
            if batch is not None:  # see HandlerSpec.linger
                pace.add(fetched)
                if pace.busy():
                    gap = started + self.spec.linger - time.monotonic()
                    if gap > 0:
                        await asyncio.sleep(gap)
                started = time.monotonic()
            self._fetching = True
            try:
                msgs = await self._sub.fetch(self.spec.batch, timeout=1.0)
            except (NatsTimeout, TimeoutError):
                fetched = 0
                continue
            except asyncio.CancelledError:
                return
            except Exception as exc:  # disconnected, consumer deleted...: keep trying, slowly
                logger.warning("consumer %s: fetch failed (%s); retrying", self.spec.durable, exc)
                await asyncio.sleep(pause)
                pause = min(pause * 2, 2.0)
                with contextlib.suppress(Exception):
                    await ensure_consumer(self.js, self.spec.stream, consumer_config(self.spec))
                continue
            finally:
                self._fetching = False
            pause = 0.1
            fetched = len(msgs)
            self._in_hand.update((id(m), m) for m in msgs)
            if batch is not None and len(msgs) > 1:
                await self.process_batch(msgs, batch)
            elif self.spec.concurrency <= 1:
                for msg in msgs:
                    await self.process(msg)
            else:
                await asyncio.gather(*(self._limited(m) for m in msgs))

    async def _keep_alive(self) -> None:
        """Every ``ack_wait / 3``: tell JetStream the messages in hand are still being worked on."""
        interval = max(0.05, self.spec.ack_wait / 3)
        while True:
            await asyncio.sleep(interval)
            for key, msg in list(self._in_hand.items()):
                if key not in self._in_hand:  # settled meanwhile: a +WPI now would push back a nak's delay
                    continue
                try:
                    await msg.in_progress()
                except Exception:  # disconnected: the server redelivers after ack_wait, as after a crash
                    break

    async def _limited(self, msg: Msg) -> None:
        async with self._limit:
            await self.process(msg)

    async def process(self, msg: Msg) -> None:
        """Handle one message: decode, call the handler in the event's context, settle it."""
        env = await self._decode(msg)
        if env is None:
            return
        outcome: Outcome | BaseException | None
        with event_context(env):
            limit = asyncio.timeout(self.spec.time_limit)
            try:
                async with limit:
                    outcome = await self.spec.fn(env)
            except BaseException as exc:
                if not is_failure(exc):
                    raise
                # Ours, or the handler's own TimeoutError (a call of its that timed out): say which.
                expired = limit.expired() and isinstance(exc, TimeoutError)
                outcome = TimeoutError(f"handler took longer than {self.spec.time_limit:g}s (timeout)") if expired else exc
        await self._settle_quietly(msg, env, outcome)

    async def process_batch(self, msgs: list[Msg], batch: Callable[[list[Envelope]], Awaitable[BatchOutcomes]]) -> None:
        """Hand the readable messages to ``batch`` at once, then settle each by its outcome.

        Nothing is acknowledged before ``batch`` returns (for the inbox: before its
        transaction committed), so a crash in between redelivers the whole batch.
        """
        pairs = [(m, env) for m in msgs if (env := await self._decode(m)) is not None]
        if not pairs:
            return
        envs = [env for _, env in pairs]
        outcomes: BatchOutcomes
        seconds = self.spec.time_limit * len(envs)  # each event its handler's time
        limit = asyncio.timeout(seconds)
        try:
            async with limit:
                outcomes = await batch(envs)
        except BaseException as exc:
            if not is_failure(exc):
                raise
            if limit.expired() and isinstance(exc, TimeoutError):
                exc = TimeoutError(f"batch of {len(envs)} took longer than {seconds:g}s (timeout)")
            outcomes = [exc] * len(envs)
        if len(outcomes) != len(envs):
            error = RuntimeError(f"batch handler answered {len(outcomes)} outcomes for {len(envs)} events")
            outcomes = [error] * len(envs)
        for (msg, env), outcome in zip(pairs, outcomes, strict=True):
            await self._settle_quietly(msg, env, outcome)

    async def _decode(self, msg: Msg) -> Envelope | None:
        delivery = msg.metadata.num_delivered or 1
        try:
            env = Envelope.from_json(msg.data)
        except MeshkitError as exc:
            # A message nobody can read will never succeed: straight to the dead letters.
            try:
                await self._dead_letter(msg, None, str(exc), delivery)
            except Exception as dlq_exc:  # NATS trouble: the message comes again
                logger.warning("consumer %s: could not dead-letter an unreadable message: %s",
                               self.spec.durable, dlq_exc)
            finally:
                self._in_hand.pop(id(msg), None)
            return None
        env.delivery = delivery
        env.stream_seq = msg.metadata.sequence.stream
        return env

    async def _settle_quietly(self, msg: Msg, env: Envelope, outcome: object) -> None:
        self._in_hand.pop(id(msg), None)  # before the ack/nak: no +WPI after it
        try:
            await self._settle(msg, env, outcome, env.delivery)
        except Exception as exc:  # the ack itself failed (disconnect): the server redelivers
            logger.warning("consumer %s: could not settle event %s: %s", self.spec.durable, env.id, exc)

    async def _settle(self, msg: Msg, env: Envelope, outcome: object, delivery: int) -> None:
        if outcome is None or outcome is Ack:
            await msg.ack()
            self.handled += 1
            return
        if outcome is Drop:
            await msg.term()
            self.handled += 1
            return
        if isinstance(outcome, Retry):
            error, delay = outcome.reason, outcome.delay
        elif isinstance(outcome, BaseException):
            error, delay = f"{type(outcome).__name__}: {outcome}", None
            logger.warning(
                "handler %s failed on %s %s (delivery %d): %s",
                self.spec.durable, env.type, env.id, delivery, error,
                exc_info=outcome if delivery == 1 else None,
            )
        else:
            error, delay = f"handler returned {outcome!r}, not Ack, Retry or Drop", None
        if self.spec.retry.exhausted(delivery):
            if isinstance(outcome, Unavailable):
                # A dependency is away (the database, a service), not the event at fault: it
                # is never dead-lettered for that; it keeps coming back at the longest delay.
                self.retried += 1
                await msg.nak(delay=self.spec.retry.maximum)
                return
            await self._dead_letter(msg, env, error, delivery)
            return
        self.retried += 1
        await msg.nak(delay=self.spec.retry.delay(delivery) if delay is None else delay)

    async def _dead_letter(self, msg: Msg, env: Envelope | None, error: str, delivery: int) -> None:
        letter = {
            "consumer": self.spec.durable,
            "stream": msg.metadata.stream,
            "subject": msg.subject,
            "stream_seq": msg.metadata.sequence.stream,
            "deliveries": delivery,
            "error": error,
            "failed_at": time.time(),
            "event": env.attributes() if env is not None else None,
            "raw": msg.data.decode("utf-8", "replace") if env is None else None,
        }
        key = env.id if env is not None else f"seq{msg.metadata.sequence.stream}"
        # The stream sequence in the dedup id: a replayed dead letter is a new message, and
        # when it fails again its new letter must be stored, not dropped as a duplicate.
        await self.js.publish(
            f"{DLQ_PREFIX}.{self.spec.durable}.{msg.subject}",
            letter_body(self.js, letter),
            headers={"Nats-Msg-Id": f"dlq-{self.spec.durable}-{key}-{msg.metadata.sequence.stream}"},
        )
        # Only once the dead letter is stored: a crash before this redelivers instead.
        await msg.term()
        self.dead += 1
        logger.error(
            "consumer %s: event %s dead-lettered after %d deliveries: %s",
            self.spec.durable, key, delivery, error,
        )


async def ensure_consumer(js: JetStreamContext, stream: str, config: ConsumerConfig) -> None:
    """Create the durable consumer unless it exists.

    An existing one keeps its position and where it started, and takes the subject
    filter, ``ack_wait`` and ``max_ack_pending`` of ``config`` when the code changed them
    (a handler's new pattern would otherwise never see the subjects it added).
    """
    try:
        info = await js.consumer_info(stream, config.durable_name)
    except NotFoundError:
        await js.add_consumer(stream, config)
        return
    have = info.config
    wanted = (config.filter_subject, config.ack_wait, config.max_ack_pending)
    if (have.filter_subject, have.ack_wait, have.max_ack_pending) == wanted:
        return
    logger.info("consumer %s: updating its filter/ack_wait/max_ack_pending from %s to %s", config.durable_name,
                (have.filter_subject, have.ack_wait, have.max_ack_pending), wanted)
    have.filter_subject, have.ack_wait, have.max_ack_pending = wanted
    await js.add_consumer(stream, have)  # create-or-update: the same name with a changed config


__all__ = [
    "BatchOutcomes",
    "Consumer",
    "Handler",
    "HandlerSpec",
    "Start",
    "consumer_config",
    "ensure_consumer",
    "event_context",
    "is_failure",
    "start_policy",
]
