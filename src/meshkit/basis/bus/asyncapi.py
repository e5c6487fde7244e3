"""AsyncAPI 3.0 documents of the events a service publishes and consumes.

::

    doc = document("catalog", "1.0.0", publishes=EVENTS)
    Path("catalog_sdk/asyncapi.json").write_bytes(render(doc))

Each event type is a channel whose address is the subject (the type name);
each message's payload is the CloudEvents envelope with ``data`` typed by the
event's pydantic model. Consumed patterns list the declared event classes they match.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import orjson
from pydantic.json_schema import models_json_schema

from meshkit.basis.bus.envelope import CONTENT_TYPE, Event
from meshkit.basis.bus.streams import stream_for

_REF = "#/components/schemas/{model}"


def _envelope_schema(model: str, type_name: str) -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["specversion", "id", "source", "type", "time", "datacontenttype", "data"],
        "properties": {
            "specversion": {"const": "1.0"},
            "id": {"type": "string", "description": "unique per event; also the Nats-Msg-Id (dedup) and inbox key"},
            "source": {"type": "string", "description": "the publishing service"},
            "type": {"const": type_name},
            "time": {"type": "string", "format": "date-time"},
            "subject": {"type": "string"},
            "datacontenttype": {"const": CONTENT_TYPE},
            "traceparent": {"type": "string", "description": "W3C trace context of the publisher"},
            "data": {"$ref": _REF.format(model=model)},
        },
    }


def document(
    service: str,
    version: str,
    *,
    publishes: Iterable[type[Event]] = (),
    consumes: Sequence[tuple[str, Iterable[type[Event]]]] = (),
    description: str = "",
) -> dict[str, Any]:
    """The AsyncAPI document (a dict) for ``service``'s published events and consumed patterns."""
    published = sorted(publishes, key=lambda c: c.type_name)
    consumed = [(pattern, sorted(classes, key=lambda c: c.type_name)) for pattern, classes in consumes]
    models = {c.__name__: c for c in published}
    for _, classes in consumed:
        models.update({c.__name__: c for c in classes})
    _, defs = models_json_schema([(models[k], "serialization") for k in sorted(models)], ref_template=_REF)
    schemas = dict(defs.get("$defs", {}))
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    for cls in {*published, *(c for _, cs in consumed for c in cs)}:
        messages[cls.__name__] = {
            "name": cls.type_name,
            "title": cls.__name__,
            "summary": (cls.__doc__ or "").strip().splitlines()[0] if cls.__doc__ else "",
            "contentType": CONTENT_TYPE,
            "payload": _envelope_schema(cls.__name__, cls.type_name),
        }
        channels[cls.type_name] = {
            "address": cls.type_name,
            "description": f"stream {stream_for(cls.type_name).name}",
            "messages": {cls.__name__: {"$ref": f"#/components/messages/{cls.__name__}"}},
        }
    for cls in published:
        operations[f"publish.{cls.type_name}"] = {
            "action": "send",
            "channel": {"$ref": f"#/channels/{_escape(cls.type_name)}"},
        }
    for pattern, classes in consumed:
        for cls in classes:
            operations[f"consume.{cls.type_name}"] = {
                "action": "receive",
                "summary": f"through subscription {pattern}",
                "channel": {"$ref": f"#/channels/{_escape(cls.type_name)}"},
            }
    return {
        "asyncapi": "3.0.0",
        "info": {"title": f"meshkit {service} events", "version": version, "description": description},
        "defaultContentType": CONTENT_TYPE,
        "channels": dict(sorted(channels.items())),
        "operations": dict(sorted(operations.items())),
        "components": {"messages": dict(sorted(messages.items())), "schemas": schemas},
    }


def _escape(name: str) -> str:
    # JSON pointer escaping: only "~" and "/" need it; dots are fine.
    return name.replace("~", "~0").replace("/", "~1")


def render(doc: dict[str, Any]) -> bytes:
    """Stable bytes for committing (sorted keys, 2-space indent, final newline)."""
    return orjson.dumps(doc, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n"


__all__ = ["document", "render"]
