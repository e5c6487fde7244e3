"""Entity tags and conditional requests (RFC 9110 §13) for products.

A product's ETag is its version in quotes: ``"3"``. ``If-None-Match`` on GET
answers 304 when the client's copy is current (weak comparison, ``*`` matches);
``If-Match`` on PATCH/DELETE names the one version the change applies to
(``*`` = any). A weak or non-numeric tag can never match a version, so it ends
in 412 like a stale one; a list of several tags is refused with 400.
"""

from __future__ import annotations

from meshkit.basis.errors import BadRequest, PreconditionFailed


def etag(version: int) -> str:
    """The ETag header value of a product at ``version``."""
    return f'"{version}"'


def _tags(value: str) -> list[str]:
    return [t.strip() for t in value.split(",") if t.strip()]


def not_modified(header: str | None, version: int) -> bool:
    """Whether ``If-None-Match: header`` matches the current ``version`` (answer 304)."""
    if not header:
        return False
    current = etag(version)
    for tag in _tags(header):
        if tag == "*" or tag.removeprefix("W/") == current:
            return True
    return False


def expected_version(header: str | None, body_version: int | None = None) -> int | None:
    """The version a change is conditional on, from ``If-Match`` and/or the body's ``version``.

    ``None`` means unconditional (no precondition, or ``*``). An If-Match tag that
    cannot be a version raises 412 at once; header and body disagreeing is a 400.
    """
    from_header: int | None = None
    if header:
        tags = _tags(header)
        if len(tags) != 1:
            raise BadRequest(
                'If-Match must hold exactly one ETag (e.g. If-Match: "3") or *',
                reason="bad_precondition",
                details={"loc": "if-match"},
            )
        tag = tags[0]
        if tag != "*":
            digits = tag[1:-1] if len(tag) >= 3 and tag[0] == tag[-1] == '"' else ""
            if not digits.isdigit():
                # Weak or foreign tags never match a strong version tag (RFC 9110 §13.1.1).
                raise PreconditionFailed(
                    f"If-Match {tag} is not a current ETag of this product: fetch it again to get one",
                    reason="version_mismatch",
                    details={"if_match": tag},
                )
            from_header = int(digits)
    if from_header is not None and body_version is not None and from_header != body_version:
        raise BadRequest(
            f"If-Match ({from_header}) and the body's version ({body_version}) disagree: send one of them",
            reason="bad_precondition",
            details={"loc": "version"},
        )
    return from_header if from_header is not None else body_version

