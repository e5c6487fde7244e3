"""Request context: the values that cross every hop."""

import time

from meshkit.basis import context as c


def test_traceparent_is_carried_and_child_keeps_the_trace():
    tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    ctx = c.RequestContext.from_headers({c.TRACEPARENT: tp})
    assert ctx.trace_id == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert ctx.sampled is True
    child = ctx.child_traceparent()
    assert child.startswith("00-4bf92f3577b34da6a3ce929d0e0e4736-")
    assert child.split("-")[2] != "00f067aa0ba902b7"


def test_malformed_traceparent_starts_a_new_trace():
    for bad in ("garbage", "00-" + "0" * 32 + "-00f067aa0ba902b7-01", "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"):
        ctx = c.RequestContext.from_headers({c.TRACEPARENT: bad})
        assert c.parse_traceparent(ctx.traceparent) is not None
        assert ctx.trace_id != "0" * 32


def test_request_id_carried_when_sane_and_replaced_when_not():
    assert c.RequestContext.from_headers({c.REQUEST_ID: "abc-123_X"}).request_id == "abc-123_X"
    replaced = c.RequestContext.from_headers({c.REQUEST_ID: "bad id\r\ninjected: 1"}).request_id
    assert replaced != "bad id\r\ninjected: 1" and replaced.isalnum()
    assert len(c.RequestContext.from_headers({c.REQUEST_ID: "x" * 500}).request_id) < 500


def test_deadline_header_becomes_a_monotonic_deadline():
    ctx = c.RequestContext.from_headers({c.DEADLINE: "1500"})
    left = ctx.remaining()
    assert left is not None and 1.3 < left <= 1.5
    assert c.RequestContext.from_headers({c.DEADLINE: "soon"}).deadline is None
    assert c.RequestContext.from_headers({}).remaining() is None
    assert ctx.deadline > time.monotonic()


def test_identity_round_trips_through_headers():
    ident = c.Identity("u1", frozenset({"admin", "ops"}), frozenset({"catalog:write"}), "t1", "acme", "user")
    back = c.Identity.from_headers(ident.to_headers())
    assert back == ident
    assert c.Identity.from_headers({}) is None


def test_bind_and_reset():
    ctx = c.RequestContext()
    token = c.bind(ctx)
    assert c.current() is ctx
    c.reset(token)
    assert c.current() is None
