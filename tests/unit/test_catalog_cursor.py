"""Catalog pagination cursors and ids."""

from __future__ import annotations

import base64
import uuid

import orjson
import pytest

from meshkit.basis.errors import BadRequest
from meshkit.services.catalog.app import ProductFilter, decode_cursor, encode_cursor, new_id
from meshkit.services.catalog.app.ids import is_id


def test_cursor_round_trip_and_is_url_safe():
    pid = new_id()
    f = ProductFilter(currency="EUR").fingerprint()
    cursor = encode_cursor(pid, f)
    assert all(c.isalnum() or c in "-_" for c in cursor)
    assert decode_cursor(cursor, f) == pid


def test_cursor_with_other_filters_is_refused():
    cursor = encode_cursor(new_id(), ProductFilter(currency="EUR").fingerprint())
    with pytest.raises(BadRequest, match="other filters") as info:
        decode_cursor(cursor, ProductFilter(currency="USD").fingerprint())
    assert info.value.reason == "bad_cursor"


@pytest.mark.parametrize(
    "cursor",
    [
        "garbage",
        "!!!",
        "ünïcode",
        "",
        base64.urlsafe_b64encode(b"[1,2]").decode(),
        base64.urlsafe_b64encode(orjson.dumps({"v": 1, "a": "not-an-id", "f": ""})).decode(),
        base64.urlsafe_b64encode(orjson.dumps({"v": 99, "a": str(uuid.uuid4()), "f": ""})).decode(),
    ],
)
def test_malformed_cursor_is_bad_request(cursor):
    with pytest.raises(BadRequest) as info:
        decode_cursor(cursor, "")
    assert info.value.reason == "bad_cursor" and info.value.status == 400
    assert "next_cursor" in info.value.message


def test_ids_are_uuid7_and_sort_by_creation():
    ids = [new_id() for _ in range(2000)]
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)
    parsed = uuid.UUID(ids[0])
    assert parsed.version == 7 and parsed.variant == uuid.RFC_4122
    assert all(is_id(i) for i in ids[:10])
    assert not is_id(ids[0].upper()) and not is_id("x" * 36) and not is_id("short")
