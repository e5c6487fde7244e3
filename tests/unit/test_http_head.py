"""Header lines as received (``HttpResponse.raw_head``) and the pairs split from them on demand."""

from __future__ import annotations

from meshkit.basis.http.connection import _cut_head_leniently
from meshkit.basis.http.response import HttpResponse, head_lines, parse_head


def test_pairs_are_split_on_first_use_in_wire_order_with_values_stripped():
    r = HttpResponse(200, None, b"", b"Content-Type:  text/plain \r\nX-Multi: 1\r\nx-multi:2\r\nEmpty:\r\n")
    assert r.headers == [(b"Content-Type", b"text/plain"), (b"X-Multi", b"1"), (b"x-multi", b"2"), (b"Empty", b"")]
    assert r.header_all("x-multi") == ["1", "2"]
    assert r.headers is r.headers  # split once
    assert HttpResponse(204, None, b"", b"").headers == []
    made = HttpResponse(200, [(b"a", b"1")], b"")  # made from pairs: no raw lines
    assert made.raw_head is None and made.headers == [(b"a", b"1")]


def test_folded_lines_and_bare_lf_are_understood():
    assert parse_head(b"A: 1\n  and more\r\nB: 2\n\tx\n") == [(b"A", b"1 and more"), (b"B", b"2 x")]


def test_a_lenient_head_is_turned_into_proper_lines():
    buf = b"HTTP/1.1 200 OK\nA: 1\n folded\nB: 2\n\nbody"
    block, cut = _cut_head_leniently(buf)
    assert block == b"A: 1 folded\r\nB: 2\r\n" and buf[cut:] == b"body"
    assert head_lines(parse_head(block)) == block
