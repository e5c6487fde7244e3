"""The hot path's answer serialisation: what passes from an upstream's headers to the client."""

from __future__ import annotations

from meshkit.gateway.fastpath import head_block, passed_on


def test_head_block_is_passed_on_then_extra_serialised():
    received = [(b"Content-Type", b"text/plain"), (b"Content-Length", b"12"), (b"Connection", b"keep-alive"),
                (b"X-Request-Id", b"spoofed"), (b"Set-Cookie", b"a=1"), (b"Transfer-Encoding", b"chunked")]
    extra = [(b"x-request-id", b"r1"), (b"ratelimit-limit", b"10")]
    block = head_block(received, extra)
    assert block == b"content-type: text/plain\r\nset-cookie: a=1\r\nx-request-id: r1\r\nratelimit-limit: 10\r\n"
    assert block == b"".join(k + b": " + v + b"\r\n" for k, v in [*passed_on(received), *extra])


def test_head_block_without_extra_never_ends_the_head_early():
    assert head_block([(b"A", b"1")], []) == b"a: 1\r\n"
    assert head_block([], []) == b""
