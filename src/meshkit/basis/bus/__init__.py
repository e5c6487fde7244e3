"""The message bus on NATS JetStream: typed events in CloudEvents envelopes, durable consumers,
retries with backoff, dead letters, replay, followers (every event in every process), AsyncAPI.

::

    from meshkit.basis.bus import Ack, Bus, Drop, Envelope, Event, Retry, use_bus

    class ProductCreated(Event):
        type_name: ClassVar[str] = "catalog.product.created"
        id: str

    bus = use_bus(service)                                   # connect/start/stop with the service

    @bus.handler("catalog.product.*", durable="search")
    async def on_product(event: Envelope):
        ...                                                   # return None/Ack, Retry(delay) or Drop

    follower = await bus.follow("sso.token.revoked", on_revoked)   # every event in every process

Dead letters (``DLQ`` stream): :func:`list_dead_letters`, :func:`get_dead_letter`,
:func:`replay_dead_letter` (also ``meshkit dlq list|show|replay``).
"""

from meshkit.basis.bus.backoff import RetryPolicy
from meshkit.basis.bus.bus import Bus, subject_matches, use_bus
from meshkit.basis.bus.consumer import Consumer, Handler, HandlerSpec
from meshkit.basis.bus.dlq import DeadLetter, get_dead_letter, list_dead_letters, replay_dead_letter
from meshkit.basis.bus.envelope import Command, Envelope, Event, envelope, event_class, new_event_id
from meshkit.basis.bus.follow import Follower, FollowHandler, follow
from meshkit.basis.bus.signals import Ack, Drop, Outcome, Retry
from meshkit.basis.bus.streams import DLQ, DLQ_STREAM, StreamSpec, ensure_stream, stream_for

__all__ = [
    "DLQ",
    "DLQ_STREAM",
    "Ack",
    "Bus",
    "Command",
    "Consumer",
    "DeadLetter",
    "Drop",
    "Envelope",
    "Event",
    "FollowHandler",
    "Follower",
    "Handler",
    "HandlerSpec",
    "Outcome",
    "Retry",
    "RetryPolicy",
    "StreamSpec",
    "ensure_stream",
    "envelope",
    "event_class",
    "follow",
    "get_dead_letter",
    "list_dead_letters",
    "new_event_id",
    "replay_dead_letter",
    "stream_for",
    "subject_matches",
    "use_bus",
]
