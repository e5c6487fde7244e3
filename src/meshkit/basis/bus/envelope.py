"""Typed events and the CloudEvents envelope they travel in.

An event (or command) is a pydantic model with a type name; the name is also
the NATS subject it is published on, and its first token names the bounded
context (and so the stream)::

    class ProductCreated(Event):
        type_name: ClassVar[str] = "catalog.product.created"
        product: Product
        version: int

On the wire every message is one JSON object in the CloudEvents 1.0 structured
format (``id``, ``source``, ``type``, ``time``, ``subject``, ``datacontenttype``,
``specversion``, ``data``) plus the ``traceparent`` extension, so the trace of
the publisher continues in the handler.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, ClassVar

import orjson
from pydantic import BaseModel, ValidationError

from meshkit.basis.context import current, parse_traceparent
from meshkit.basis.errors import BadRequest, ConfigError

SPECVERSION = "1.0"
CONTENT_TYPE = "application/json"

#: Every declared event class by type name (filled as the classes are defined).
_TYPES: dict[str, type[Event]] = {}
#: Attributes a received envelope must have as non-empty strings, and those that may be absent.
_REQUIRED = ("id", "source", "type")
_OPTIONAL = ("time", "subject", "traceparent", "datacontenttype", "specversion")


class Event(BaseModel):
    """Base of every typed event: a pydantic model with a ``type_name`` class variable.

    Subclasses with a ``type_name`` register themselves, so a received envelope
    of that type decodes into the class. Two classes may not claim one name.
    """

    type_name: ClassVar[str] = ""
    #: ``"event"`` (something happened) or ``"command"`` (please do something).
    kind: ClassVar[str] = "event"

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        name = cls.__dict__.get("type_name")
        if not name:
            return
        check_type_name(name)
        other = _TYPES.get(name)
        if other is not None and other.__qualname__ != cls.__qualname__:
            raise ConfigError(f"event type {name!r} is declared twice: {other.__qualname__} and {cls.__qualname__}")
        _TYPES[name] = cls


class Command(Event):
    """A request for another service to act (same wire format as an event)."""

    kind: ClassVar[str] = "command"


def check_type_name(name: str) -> None:
    """Refuse a type name that cannot be a subject: ``context.noun.verb``, lower case, no wildcards."""
    tokens = name.split(".")
    if len(tokens) < 2 or any(not t or not all(c.isalnum() or c in "_-" for c in t) for t in tokens):
        raise ConfigError(
            f"event type name {name!r} must be dot-separated tokens of letters, digits, '_' or '-', "
            "starting with the bounded context, e.g. 'catalog.product.created'"
        )


def event_class(type_name: str) -> type[Event] | None:
    """The declared class for ``type_name``, if any."""
    return _TYPES.get(type_name)


def new_event_id() -> str:
    """A fresh, globally unique event id (also the ``Nats-Msg-Id``)."""
    return uuid.uuid4().hex


@dataclass(slots=True)
class Envelope:
    """One CloudEvent: attributes plus ``data`` (a typed :class:`Event` when its type is declared).

    ``delivery`` (how many times this message was delivered) and ``stream_seq``
    are filled by the consumer; they are not part of the wire format.
    """

    type: str
    source: str
    data: Any
    id: str = field(default_factory=new_event_id)
    time: datetime = field(default_factory=lambda: datetime.now(UTC))
    subject: str | None = None
    traceparent: str | None = None
    datacontenttype: str = CONTENT_TYPE
    specversion: str = SPECVERSION
    delivery: int = 1
    stream_seq: int = 0

    def attributes(self) -> dict[str, Any]:
        """The CloudEvents attributes and data as a JSON-ready dict."""
        data = self.data.model_dump(mode="json") if isinstance(self.data, BaseModel) else self.data
        out: dict[str, Any] = {
            "specversion": self.specversion,
            "id": self.id,
            "source": self.source,
            "type": self.type,
            "time": self.time.astimezone(UTC).isoformat().replace("+00:00", "Z"),
            "datacontenttype": self.datacontenttype,
            "data": data,
        }
        if self.subject is not None:
            out["subject"] = self.subject
        if self.traceparent is not None:
            out["traceparent"] = self.traceparent
        return out

    def to_json(self) -> bytes:
        """The structured-mode CloudEvents JSON."""
        return orjson.dumps(self.attributes())

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Envelope:
        """Rebuild from attributes; ``data`` becomes the declared event class when the type is known."""
        try:
            for name in _REQUIRED:
                if not isinstance(raw.get(name), str) or not raw[name]:
                    raise ValueError(f"attribute {name!r} must be a non-empty string, not {raw.get(name)!r:.60}")
            for name in _OPTIONAL:
                if raw.get(name) is not None and not isinstance(raw[name], str):
                    raise ValueError(f"attribute {name!r} must be a string, not {raw[name]!r:.60}")
            type_name = raw["type"]
            data = raw.get("data")
            model = _TYPES.get(type_name)
            if model is not None:  # a declared type: its handlers get the model, or nothing
                data = model.model_validate(data)
            return cls(
                type=type_name,
                source=raw["source"],
                data=data,
                id=raw["id"],
                time=_parse_time(raw["time"]) if raw.get("time") else datetime.now(UTC),
                subject=raw.get("subject"),
                traceparent=raw.get("traceparent"),
                datacontenttype=raw.get("datacontenttype") or CONTENT_TYPE,
                specversion=raw.get("specversion") or SPECVERSION,
            )
        except (KeyError, TypeError, ValueError, ValidationError) as exc:
            raise BadRequest(
                f"not a valid event envelope: {exc}", reason="bad_envelope"
            ) from exc

    @classmethod
    def from_json(cls, body: bytes) -> Envelope:
        """Parse the wire format; :class:`BadRequest` (reason ``bad_envelope``) when it is not one."""
        try:
            raw = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise BadRequest(f"event body is not JSON: {exc}", reason="bad_envelope") from exc
        if not isinstance(raw, dict):
            raise BadRequest("event body is not a JSON object", reason="bad_envelope")
        return cls.from_dict(raw)


def _parse_time(text: str) -> datetime:
    """An RFC 3339 time: ``Z`` or ``z`` for UTC (RFC 3339 allows both); one without an offset is taken as UTC."""
    if text[-1:] in ("Z", "z"):
        text = text[:-1] + "+00:00"
    parsed = datetime.fromisoformat(text)
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def envelope(
    event: Event | Envelope,
    *,
    source: str,
    subject: str | None = None,
    id: str | None = None,
) -> Envelope:
    """Wrap ``event`` for publishing, with the current trace (a child span) as ``traceparent``."""
    if isinstance(event, Envelope):
        return event
    name = type(event).type_name
    if not name:
        raise ConfigError(f"{type(event).__qualname__} has no type_name: declare `type_name: ClassVar[str] = ...`")
    ctx = current()
    traceparent = ctx.child_traceparent() if ctx is not None else _fresh_traceparent()
    return Envelope(type=name, source=source, data=event, id=id or new_event_id(), subject=subject, traceparent=traceparent)


def _fresh_traceparent() -> str:
    value = f"00-{uuid.uuid4().hex}-{uuid.uuid4().hex[:16]}-01"
    assert parse_traceparent(value) is not None
    return value


__all__ = ["CONTENT_TYPE", "SPECVERSION", "Command", "Envelope", "Event", "envelope", "event_class", "new_event_id"]
