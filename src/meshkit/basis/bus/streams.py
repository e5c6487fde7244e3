"""JetStream streams: one per bounded context, created or updated idempotently.

The context is the first token of an event type (``catalog.product.created`` →
context ``catalog``), its stream is the context in capitals (``CATALOG``) and
takes every subject of the context (``catalog.>``). Dead letters go to the
``DLQ`` stream (subjects ``dlq.>``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from nats.js import JetStreamContext
from nats.js.api import RetentionPolicy, StorageType, StreamConfig
from nats.js.errors import APIError, NotFoundError

DLQ_STREAM = "DLQ"
DLQ_PREFIX = "dlq"
#: How long JetStream remembers a ``Nats-Msg-Id`` to drop a duplicate publish (seconds).
DUPLICATE_WINDOW = 120.0


@dataclass(frozen=True, slots=True)
class StreamSpec:
    """A stream to have: name, subjects, and how long it keeps messages (``max_age`` seconds, 0 = forever)."""

    name: str
    subjects: tuple[str, ...]
    max_age: float = 0.0
    duplicate_window: float = DUPLICATE_WINDOW
    description: str = field(default="", compare=False)

    def config(self) -> StreamConfig:
        return StreamConfig(
            name=self.name,
            subjects=list(self.subjects),
            retention=RetentionPolicy.LIMITS,
            storage=StorageType.FILE,
            max_age=self.max_age or None,
            duplicate_window=self.duplicate_window,
            description=self.description or None,
        )


def context_of(subject: str) -> str:
    """The bounded context of a subject or pattern (its first token)."""
    return subject.split(".", 1)[0]


def stream_for(subject: str) -> StreamSpec:
    """The stream of the bounded context ``subject`` belongs to."""
    ctx = context_of(subject)
    if not ctx or ctx in ("*", ">"):
        raise ValueError(f"subject {subject!r} does not start with a bounded context")
    return StreamSpec(name=ctx.upper().replace("-", "_"), subjects=(f"{ctx}.>",), description=f"events of {ctx}")


DLQ = StreamSpec(name=DLQ_STREAM, subjects=(f"{DLQ_PREFIX}.>",), description="dead letters of every consumer")


async def ensure_stream(js: JetStreamContext, spec: StreamSpec) -> None:
    """Create ``spec``'s stream, or update it when its subjects differ; safe to call from every instance."""
    for _ in range(3):
        try:
            info = await js.stream_info(spec.name)
        except NotFoundError:
            try:
                await js.add_stream(spec.config())
                return
            except APIError:
                continue  # another instance created it meanwhile: look again
        have = set(info.config.subjects or [])
        if set(spec.subjects) <= have:
            return
        config = info.config
        config.subjects = sorted(have | set(spec.subjects))
        await js.update_stream(config)
        return
    raise RuntimeError(f"could not create or update stream {spec.name!r}")


__all__ = ["DLQ", "DLQ_PREFIX", "DLQ_STREAM", "DUPLICATE_WINDOW", "StreamSpec", "context_of", "ensure_stream", "stream_for"]
