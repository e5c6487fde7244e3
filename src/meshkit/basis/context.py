"""What travels with a request across hops: request id, trace, deadline, caller.

The runtime's middleware fills a :class:`RequestContext` for each incoming
request and puts it in a context variable; the service client reads it to carry
the same values to the next hop. Header names are defined here, once.
"""

from __future__ import annotations

import os
import time
from contextvars import ContextVar
from dataclasses import dataclass, field

REQUEST_ID = "x-request-id"
TRACEPARENT = "traceparent"
TRACESTATE = "tracestate"
#: Remaining time budget of the caller, in whole milliseconds. Relative (not a
#: wall-clock instant) so clock skew between hosts does not matter.
DEADLINE = "x-deadline-ms"

#: Identity the gateway injects after verifying a credential. A service trusts
#: these only because the gateway strips any that a client sent.
SUBJECT = "x-meshkit-subject"
ROLES = "x-meshkit-roles"
PERMISSIONS = "x-meshkit-permissions"
TOKEN_ID = "x-meshkit-token-id"
TENANT = "x-meshkit-tenant"
CLIENT_KIND = "x-meshkit-client"  # "user", "service" or "apikey"
IDENTITY_HEADERS = (SUBJECT, ROLES, PERMISSIONS, TOKEN_ID, TENANT, CLIENT_KIND)
#: The name of the service making a call (set by the service client).
CALLER = "x-meshkit-caller"


@dataclass(slots=True)
class Identity:
    """Who is calling, as injected by the gateway (or a service account)."""

    subject: str
    roles: frozenset[str] = frozenset()
    permissions: frozenset[str] = frozenset()
    token_id: str | None = None
    tenant: str | None = None
    kind: str = "user"

    def to_headers(self) -> dict[str, str]:
        h = {
            SUBJECT: self.subject,
            ROLES: ",".join(sorted(self.roles)),
            PERMISSIONS: ",".join(sorted(self.permissions)),
            CLIENT_KIND: self.kind,
        }
        if self.token_id:
            h[TOKEN_ID] = self.token_id
        if self.tenant:
            h[TENANT] = self.tenant
        return h

    @classmethod
    def from_headers(cls, headers: dict[str, str]) -> Identity | None:
        """Read an identity from (lower-cased) headers; ``None`` when anonymous."""
        sub = headers.get(SUBJECT)
        if not sub:
            return None

        def split(v: str | None) -> frozenset[str]:
            return frozenset(p for p in (v or "").split(",") if p)

        return cls(
            subject=sub,
            roles=split(headers.get(ROLES)),
            permissions=split(headers.get(PERMISSIONS)),
            token_id=headers.get(TOKEN_ID) or None,
            tenant=headers.get(TENANT) or None,
            kind=headers.get(CLIENT_KIND) or "user",
        )


@dataclass(slots=True)
class RequestContext:
    """Per-request values that must reach the next hop."""

    request_id: str = field(default_factory=lambda: new_request_id())
    trace_id: str = field(default_factory=lambda: os.urandom(16).hex())
    span_id: str = field(default_factory=lambda: os.urandom(8).hex())
    sampled: bool = True
    tracestate: str | None = None
    #: ``time.monotonic()`` instant after which the work is pointless, or None.
    deadline: float | None = None
    identity: Identity | None = None
    #: The gateway's seal on ``identity`` (``x-meshkit-seal``), passed on with it (see meshkit.basis.seal).
    seal: str | None = None

    @property
    def traceparent(self) -> str:
        return f"00-{self.trace_id}-{self.span_id}-{'01' if self.sampled else '00'}"

    def remaining(self) -> float | None:
        """Seconds left before the deadline (may be negative), or None."""
        return None if self.deadline is None else self.deadline - time.monotonic()

    def child_traceparent(self) -> str:
        """A ``traceparent`` for an outgoing call: same trace, new span id."""
        return f"00-{self.trace_id}-{os.urandom(8).hex()}-{'01' if self.sampled else '00'}"

    @classmethod
    def from_headers(cls, headers: dict[str, str]) -> RequestContext:
        """Build from incoming (lower-cased) headers, making what is missing."""
        ctx = cls(request_id=_valid_request_id(headers.get(REQUEST_ID)) or new_request_id())
        parsed = parse_traceparent(headers.get(TRACEPARENT))
        if parsed:
            ctx.trace_id, _parent, ctx.sampled = parsed
            ctx.tracestate = headers.get(TRACESTATE)
        raw = headers.get(DEADLINE)
        if raw:
            try:
                ms = int(raw)
            except ValueError:
                ms = -1
            if ms >= 0:
                ctx.deadline = time.monotonic() + ms / 1000.0
        ctx.identity = Identity.from_headers(headers)
        return ctx


_current: ContextVar[RequestContext | None] = ContextVar("meshkit_request_context", default=None)


def current() -> RequestContext | None:
    """The context of the request being handled, if any."""
    return _current.get()


def bind(ctx: RequestContext | None):
    """Make ``ctx`` current; returns a token for :func:`reset`."""
    return _current.set(ctx)


def reset(token) -> None:
    _current.reset(token)


def new_request_id() -> str:
    return os.urandom(12).hex()


def _valid_request_id(value: str | None) -> str | None:
    # Carry a client's id only when it is sane: printable, short, no separators.
    if value and len(value) <= 128 and value.isascii() and value.replace("-", "").replace("_", "").isalnum():
        return value
    return None


def parse_traceparent(value: str | None) -> tuple[str, str, bool] | None:
    """``(trace_id, parent_span_id, sampled)`` from a W3C traceparent, or None if invalid."""
    if not value or len(value) < 55:
        return None
    parts = value.strip().split("-")
    if len(parts) < 4:
        return None
    version, trace_id, span_id, flags = parts[0], parts[1], parts[2], parts[3]
    if len(version) != 2 or version == "ff" or len(trace_id) != 32 or len(span_id) != 16 or len(flags) != 2:
        return None
    try:
        int(trace_id, 16), int(span_id, 16)
        sampled = bool(int(flags, 16) & 1)
    except ValueError:
        return None
    if trace_id == "0" * 32 or span_id == "0" * 16:
        return None
    return trace_id, span_id, sampled
