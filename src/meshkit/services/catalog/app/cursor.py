"""Opaque pagination cursors.

A cursor is url-safe base64 of a small JSON object: the last id of the page and
a hash of the filters it was made under. Clients must treat it as opaque; a
cursor that was tampered with, or reused with other filters, is a 400.
"""

from __future__ import annotations

import base64
import binascii
import hashlib

import orjson

from meshkit.basis.errors import BadRequest
from meshkit.services.catalog.app.ids import is_id

_VERSION = 1


def encode_cursor(after: str, fingerprint: str) -> str:
    """The cursor for the page after id ``after`` of a listing with ``fingerprint`` filters."""
    raw = orjson.dumps({"v": _VERSION, "a": after, "f": _hash(fingerprint)})
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def decode_cursor(cursor: str, fingerprint: str) -> str:
    """The id a cursor continues after; :class:`BadRequest` (``bad_cursor``) if it is not one of ours."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        data = orjson.loads(raw)
        after = data["a"]
        ok = data.get("v") == _VERSION and isinstance(after, str) and is_id(after)
    except (binascii.Error, ValueError, TypeError, KeyError, orjson.JSONDecodeError):
        ok = False
    if not ok:
        raise BadRequest(
            "the cursor is not valid: pass next_cursor from a previous page unchanged, or omit it to start over",
            reason="bad_cursor",
            details={"loc": "cursor"},
        )
    if data.get("f") != _hash(fingerprint):
        raise BadRequest(
            "the cursor belongs to a listing with other filters: repeat the same filters, or omit the cursor",
            reason="bad_cursor",
            details={"loc": "cursor"},
        )
    return after


def _hash(fingerprint: str) -> str:
    return hashlib.blake2s(fingerprint.encode(), digest_size=6).hexdigest()
