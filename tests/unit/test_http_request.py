"""Request serialisation: framing headers, Host, validation against header injection."""

from __future__ import annotations

import pytest

from meshkit.basis.http import InvalidRequest
from meshkit.basis.http.request import INLINE_BODY_MAX, encode_request, host_line, method_bytes

HOST = host_line("10.0.0.5", 8080)


def test_get_without_headers_is_one_write():
    data, tail, close = encode_request("GET", "/a?b=1", HOST, None, b"")
    assert data == b"GET /a?b=1 HTTP/1.1\r\nHost: 10.0.0.5:8080\r\n\r\n"
    assert tail is None and close is False


def test_dict_and_list_headers_are_equivalent():
    a, _, _ = encode_request("GET", "/", HOST, {"x-request-id": "r1", "accept": "*/*"}, b"")
    b, _, _ = encode_request("GET", "/", HOST, [(b"x-request-id", b"r1"), ("accept", "*/*")], b"")
    assert a == b
    assert b"x-request-id: r1\r\naccept: */*\r\nHost: 10.0.0.5:8080\r\n\r\n" in a


def test_body_sets_content_length_and_callers_framing_is_dropped():
    data, tail, _ = encode_request(
        "POST", "/x", HOST, {"Content-Length": "999", "Transfer-Encoding": "chunked", "a": "b"}, b"{}"
    )
    assert tail is None
    assert data.endswith(b"Content-Length: 2\r\n\r\n{}")
    assert b"999" not in data and b"chunked" not in data


def test_empty_post_sends_zero_length_and_get_none():
    assert b"Content-Length: 0\r\n" in encode_request("POST", "/", HOST, None, b"")[0]
    assert b"Content-Length" not in encode_request("DELETE", "/", HOST, None, b"")[0]


def test_large_body_is_not_copied_into_the_head():
    body = b"x" * (INLINE_BODY_MAX + 1)
    data, tail, _ = encode_request("PUT", "/blob", HOST, None, body)
    assert tail is body
    assert data.endswith(b"Content-Length: %d\r\n\r\n" % len(body))


def test_callers_host_wins_and_connection_close_is_reported():
    data, _, close = encode_request("GET", "/", HOST, {"Host": "api.example", "Connection": "close"}, b"")
    assert b"Host: api.example\r\n" in data and b"10.0.0.5" not in data
    assert close is True


def test_host_line_forms():
    assert host_line("example.org", 80) == b"Host: example.org\r\n"
    assert host_line("::1", 9000) == b"Host: [::1]:9000\r\n"


@pytest.mark.parametrize(
    "headers",
    [{"x-a": "1\r\nx-evil: 2"}, {"x-a\n": "1"}, [(b"x-a", b"1\rx")], {"x": "a\nb"}],
)
def test_cr_or_lf_in_headers_is_refused(headers):
    with pytest.raises(InvalidRequest, match="CR or LF"):
        encode_request("GET", "/", HOST, headers, b"")


@pytest.mark.parametrize("target", ["/a b", "/a\r\nHost: x", "", "/\x00"])
def test_bad_targets_are_refused(target):
    with pytest.raises(InvalidRequest, match="target"):
        encode_request("GET", target, HOST, None, b"")


def test_methods():
    assert method_bytes("PROPFIND") == b"PROPFIND"
    with pytest.raises(InvalidRequest):
        method_bytes("GET /x")


def test_str_body_is_a_type_error():
    with pytest.raises(TypeError, match="bytes"):
        encode_request("POST", "/", HOST, None, "text")  # type: ignore[arg-type]


def test_list_of_byte_pairs_takes_the_joined_path_with_the_same_rules():
    data, _, close = encode_request("GET", "/", HOST, [(b"a", b"1"), (b"x-forwarded-host", b"h")], b"")
    assert data == b"GET / HTTP/1.1\r\na: 1\r\nx-forwarded-host: h\r\nHost: 10.0.0.5:8080\r\n\r\n"
    assert close is False
    # framing and Host names in any case still get the exact treatment
    data, _, close = encode_request("GET", "/", HOST, [(b"HOST", b"mine"), (b"Connection", b"close"),
                                                       (b"Content-Length", b"5")], b"")
    assert data == b"GET / HTTP/1.1\r\nHOST: mine\r\nConnection: close\r\n\r\n"
    assert close is True
    for bad in ([(b"a", b"1\r\nx: y")], [(b"a\n", b"1")], [(b"a", b"\r")]):
        with pytest.raises(InvalidRequest, match="CR or LF"):
            encode_request("GET", "/", HOST, bad, b"")
    with pytest.raises(ValueError):
        encode_request("GET", "/", HOST, [(b"a", b"1", b"2")], b"")


@pytest.mark.parametrize("name", [b"host", b"HOST", b"Content-Length", b"cONTENT-LENGTH", b"Transfer-Encoding",
                                  b"TRANSFER-ENCODING", b"connection", b"CONNECTION"])
def test_every_special_name_in_any_case_leaves_the_joined_path(name):
    # behind other headers, each of which the joined path lets through
    data, _, _ = encode_request("POST", "/", HOST, [(b"traceparent", b"t"), (b"x-a", b"1"), (name, b"v")], b"ab")
    assert data.count(b"Content-Length") + data.count(b"CONTENT-LENGTH") + data.count(b"cONTENT-LENGTH") == 1
    assert data.endswith(b"Content-Length: 2\r\n\r\nab")  # the caller's framing is always replaced
    assert b"transfer-encoding" not in data.lower()
    assert data.lower().count(b"host:") == 1  # the caller's Host, or the pool's: never both


@pytest.mark.parametrize("headers", [[(b"", b"v")], [(b"a", b"1"), (b"", b"v")], {"": "v"}])
def test_an_empty_header_name_is_refused(headers):
    with pytest.raises(InvalidRequest, match="empty"):
        encode_request("GET", "/", HOST, headers, b"")
