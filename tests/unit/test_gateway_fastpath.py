"""The hot path's answer serialisation: what passes from an upstream's headers to the client."""

from __future__ import annotations

from meshkit.basis.http.response import head_lines, parse_head
from meshkit.gateway.fastpath import DROP_ANSWER, head_block, passed_on

RECEIVED = [(b"Content-Type", b"text/plain"), (b"Content-Length", b"12"), (b"Connection", b"keep-alive"),
            (b"X-Request-Id", b"spoofed"), (b"Set-Cookie", b"a=1"), (b"Transfer-Encoding", b"chunked"),
            (b"KEEP-ALIVE", b"timeout=5"), (b"x-content-length-note", b"kept"), (b"Trailer", b"x")]


def test_head_block_is_passed_on_then_extra_serialised():
    extra = [(b"x-request-id", b"r1"), (b"ratelimit-limit", b"10")]
    block = head_block(head_lines(RECEIVED), extra)
    assert block == (b"Content-Type: text/plain\r\nSet-Cookie: a=1\r\nx-content-length-note: kept\r\n"
                     b"x-request-id: r1\r\nratelimit-limit: 10\r\n")
    # the same names and values as the general path's passed_on (which lower-cases names)
    assert [(k.lower(), v) for k, v in parse_head(block)] == [*passed_on(RECEIVED), *extra]


def test_every_dropped_name_is_dropped_in_any_case_and_nothing_else():
    for name in DROP_ANSWER:
        for variant in (name, name.upper(), name.title()):
            assert head_block(head_lines([(b"a", b"1"), (variant, b"v"), (b"b", b"2")]), []) == b"a: 1\r\nb: 2\r\n"


def test_head_block_without_extra_never_ends_the_head_early():
    assert head_block(b"A: 1\r\n", []) == b"A: 1\r\n"
    assert head_block(b"", []) == b""
    assert head_block(b"Content-Length: 3\r\n", []) == b""
