"""One error hierarchy, mapped to HTTP in one place."""

import orjson
import pytest

from meshkit.basis import errors as e


@pytest.mark.parametrize(
    ("cls", "status", "reason"),
    [(e.BadRequest, 400, "bad_request"), (e.NotFound, 404, "not_found"), (e.Conflict, 409, "conflict"),
     (e.Unprocessable, 422, "validation_failed"), (e.TooManyRequests, 429, "rate_limited"),
     (e.Unavailable, 503, "unavailable"), (e.GatewayTimeout, 504, "timeout")],
)
def test_classes_map_to_status_and_reason(cls, status, reason):
    status_, body, _ = e.error_body(cls("nope", details={"field": "x"}))
    assert status_ == status
    assert orjson.loads(body) == {"error": {"reason": reason, "message": "nope", "details": {"field": "x"}}}


def test_unknown_exception_is_a_generic_500_without_internals():
    status, body, _ = e.error_body(RuntimeError("password=hunter2 at line 3"))
    assert status == 500
    assert b"hunter2" not in body
    assert orjson.loads(body)["error"]["reason"] == "internal"


def test_headers_and_custom_reason_survive():
    exc = e.TooManyRequests("slow down", reason="quota", headers={"retry-after": "2"})
    status, body, headers = e.error_body(exc)
    assert (status, headers) == (429, {"retry-after": "2"})
    assert orjson.loads(body)["error"]["reason"] == "quota"


def test_from_response_rebuilds_the_matching_class():
    body = orjson.dumps({"error": {"reason": "duplicate_sku", "message": "sku taken", "details": {"sku": "A"}}})
    exc = e.from_response(409, body)
    assert isinstance(exc, e.Conflict)
    assert (exc.reason, exc.message, exc.details) == ("duplicate_sku", "sku taken", {"sku": "A"})
    odd = e.from_response(502, b"<html>bad gateway</html>")
    assert isinstance(odd, e.BadGateway) and odd.reason == "upstream_error"
