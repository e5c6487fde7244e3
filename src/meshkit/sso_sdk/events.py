"""The events the SSO publishes (stream ``SSO``, subjects ``sso.>``).

``sso.token.revoked``: an access token was revoked before its expiry (logout,
refresh-token reuse, a disabled user, ended sessions). Its event id is the
token's ``jti``, so a publish retried within the stream's duplicate window is
stored once, and a consumer may key on it. Every gateway and every SSO
instance must see every one of them, including those published while it was
down: each follows the stream from its start with a consumer of its own
(:func:`meshkit.basis.bus.follow`), never a durable shared by instances.

The SSO keeps the stream's messages for ``SSO_REVOCATION_RETENTION`` seconds
(default: its access-token lifetime plus :data:`RETENTION_MARGIN`), so the
stream holds the revocation of every token that is still valid anywhere.
"""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from meshkit.basis.bus import Event, StreamSpec

#: Version of the event contract (the AsyncAPI ``info.version``); bump on changes.
VERSION = "1.0.0"
STREAM = "SSO"
#: The subject (and CloudEvents ``type``) of a revocation.
TOKEN_REVOKED = "sso.token.revoked"
#: Added to the access-token lifetime for the stream's default retention (seconds): a gateway
#: accepts a token up to its leeway (30 s) past ``exp``, and clocks drift.
RETENTION_MARGIN = 300.0
#: The retention a stream gets from whoever creates it first, before the SSO applies its own
#: setting: the default access-token lifetime (900 s) plus the margin.
DEFAULT_RETENTION = 900.0 + RETENTION_MARGIN


class TokenRevoked(Event):
    """An access token was revoked: refuse it until it expires."""

    type_name: ClassVar[str] = TOKEN_REVOKED
    jti: str = Field(min_length=1, max_length=200, description="the token's id (its jti claim); also the event id")
    exp: float = Field(gt=0, strict=True, description="the token's expiry (its exp claim, epoch seconds): "
                                         "the revocation matters until then")


#: All the SSO's event classes, for ``bus.publishes(*EVENTS)`` and the AsyncAPI document.
EVENTS = (TokenRevoked,)


def revocation_stream(retention: float = DEFAULT_RETENTION) -> StreamSpec:
    """The ``SSO`` stream, keeping messages ``retention`` seconds (its duplicate window fits inside)."""
    if retention <= 0:
        raise ValueError(f"the SSO stream's retention must be positive seconds, not {retention!r}")
    return StreamSpec(name=STREAM, subjects=("sso.>",), max_age=retention, duplicate_window=min(120.0, retention),
                      description="the SSO's events: token revocations, kept as long as a token can live")


__all__ = [
    "DEFAULT_RETENTION",
    "EVENTS",
    "RETENTION_MARGIN",
    "STREAM",
    "TOKEN_REVOKED",
    "VERSION",
    "TokenRevoked",
    "revocation_stream",
]
