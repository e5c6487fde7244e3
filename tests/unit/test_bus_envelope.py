"""Envelopes, typed events, outcomes, backoff, subjects and streams (no server)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import ClassVar

import orjson
import pytest

from meshkit.basis import context
from meshkit.basis.bus import (
    Ack,
    Bus,
    Drop,
    Envelope,
    Event,
    Retry,
    RetryPolicy,
    envelope,
    event_class,
    stream_for,
)
from meshkit.basis.bus.bus import subject_matches
from meshkit.basis.bus.consumer import start_policy
from meshkit.basis.errors import BadRequest, ConfigError


class Priced(Event):
    type_name: ClassVar[str] = "unitbus.item.priced"
    item: str
    cents: int


def test_round_trip_keeps_attributes_and_types_the_data():
    env = Envelope(type="unitbus.item.priced", source="pricing", data=Priced(item="a", cents=5), subject="a",
                   traceparent="00-" + "1" * 32 + "-" + "2" * 16 + "-01",
                   time=datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC))
    raw = orjson.loads(env.to_json())
    assert raw == {
        "specversion": "1.0", "id": env.id, "source": "pricing", "type": "unitbus.item.priced",
        "time": "2025-01-02T03:04:05Z", "datacontenttype": "application/json", "subject": "a",
        "traceparent": env.traceparent, "data": {"item": "a", "cents": 5},
    }
    back = Envelope.from_json(env.to_json())
    assert back.data == Priced(item="a", cents=5) and back.time == env.time and back.id == env.id
    assert event_class("unitbus.item.priced") is Priced


def test_unknown_types_stay_dicts_and_bad_bodies_are_bad_requests():
    env = Envelope.from_json(b'{"type":"x.y","source":"s","id":"1","time":"2025-01-01T00:00:00Z","data":{"a":1}}')
    assert env.data == {"a": 1}
    for body in (b"not json", b"[1]", b'{"type":"x.y"}', b'{"type":"unitbus.item.priced","source":"s","id":"1","data":{"item":1}}'):
        with pytest.raises(BadRequest) as info:
            Envelope.from_json(body)
        assert info.value.reason == "bad_envelope"


def test_attributes_of_the_wrong_type_and_untyped_data_of_a_declared_type_are_bad_envelopes():
    # Each of these reached a handler (or broke the consumer with an AttributeError) before.
    base = {"type": "x.y", "source": "s", "id": "1"}
    for body in (
        {**base, "time": 123},                                   # not a string: AttributeError on .replace
        {**base, "id": {"n": 1}},                                # an id that is no id
        {**base, "id": ""},
        {**base, "source": 7},
        {**base, "traceparent": ["00-x"]},
        {**base, "type": "unitbus.item.priced", "data": "a string"},   # a declared type without its model
        {**base, "type": "unitbus.item.priced"},                       # ... or without data at all
    ):
        with pytest.raises(BadRequest) as info:
            Envelope.from_json(orjson.dumps(body))
        assert info.value.reason == "bad_envelope", body


def test_times_are_read_as_rfc_3339_says():
    # Before: a lower-case "z" (RFC 3339 allows it) made the envelope unreadable, and a time
    # without an offset was a naive datetime, written back shifted by the machine's local offset.
    base = {"type": "x.y", "source": "s", "id": "1"}
    for text in ("2025-01-02T03:04:05z", "2025-01-02T03:04:05Z", "2025-01-02T03:04:05+00:00", "2025-01-02T03:04:05"):
        env = Envelope.from_dict({**base, "time": text})
        assert env.time == datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC), text
        assert env.attributes()["time"] == "2025-01-02T03:04:05Z"


def test_envelope_carries_a_child_of_the_current_trace():
    ctx = context.RequestContext()
    token = context.bind(ctx)
    try:
        env = envelope(Priced(item="a", cents=1), source="s")
    finally:
        context.reset(token)
    trace_id, span_id, sampled = context.parse_traceparent(env.traceparent)
    assert trace_id == ctx.trace_id and span_id != ctx.span_id and sampled
    assert context.parse_traceparent(envelope(Priced(item="a", cents=1), source="s").traceparent)


def test_type_names_are_checked_and_unique():
    with pytest.raises(ConfigError):
        class Bad(Event):
            type_name: ClassVar[str] = "no-dots"
    with pytest.raises(ConfigError):
        class Again(Event):
            type_name: ClassVar[str] = "unitbus.item.priced"
    class Untyped(Event):
        x: int
    with pytest.raises(ConfigError):
        envelope(Untyped(x=1), source="s")


def test_outcomes_are_not_errors():
    assert not isinstance(Ack, BaseException) and not isinstance(Drop, BaseException)
    assert Retry(2.0).delay == 2.0 and Retry().delay is None
    assert repr(Ack) == "Ack" and repr(Drop) == "Drop"


def test_retry_policy_grows_and_caps():
    p = RetryPolicy(max_deliveries=4, initial=0.5, factor=2, maximum=1.5, jitter=0)
    assert [p.delay(d) for d in (1, 2, 3, 4)] == [0.5, 1.0, 1.5, 1.5]
    assert not p.exhausted(3) and p.exhausted(4)
    jittered = RetryPolicy(initial=1.0, jitter=0.1)
    assert all(0.9 <= jittered.delay(1) <= 1.1 for _ in range(50))


def test_a_handler_cannot_consume_the_dead_letters():
    # Before: accepted; every letter was unreadable as an event, so it was dead-lettered into the
    # stream the handler consumed, which made another letter, and so on without end.
    bus = Bus("nats://127.0.0.1:1", source="unitbus")

    async def on_letter(event: Envelope) -> None: ...

    with pytest.raises(ConfigError, match="dead letters"):
        bus.subscribe("dlq.>", on_letter, durable="alerts")


def test_subjects_and_streams():
    assert subject_matches("catalog.product.*", "catalog.product.created")
    assert not subject_matches("catalog.product.*", "catalog.product.created.x")
    assert subject_matches("catalog.>", "catalog.product.created") and not subject_matches("catalog.>", "catalog")
    assert not subject_matches("catalog.product", "catalog.product.created")
    spec = stream_for("catalog.product.*")
    assert spec.name == "CATALOG" and spec.subjects == ("catalog.>",)
    with pytest.raises(ValueError):
        stream_for(">")


def test_handler_declaration_checks():
    bus = Bus("nats://127.0.0.1:1", source="svc")

    @bus.handler("catalog.product.*")
    async def on_product(event):
        return None

    assert bus.specs[0].durable == "svc-on-product" and bus.specs[0].stream == "CATALOG"
    with pytest.raises(ConfigError):
        bus.subscribe("catalog.x", on_product)  # same durable twice
    with pytest.raises(ConfigError):
        bus.subscribe("catalog.x", on_product, durable="bad.name")
    with pytest.raises(ValueError):
        bus.subscribe("catalog.y", on_product, durable="other", start="yesterday")
    policy, when = start_policy(datetime(2025, 1, 1, tzinfo=UTC))
    assert when == datetime(2025, 1, 1, tzinfo=UTC) and policy.value == "by_start_time"
