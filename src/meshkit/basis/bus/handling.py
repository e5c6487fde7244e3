"""How a handler runs: in the event's request context, and which of its exceptions fail the event.

Shared by the consumers, the followers and the inbox.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from meshkit.basis import context
from meshkit.basis.bus.envelope import Envelope
from meshkit.basis.tasks import is_failure  # which of a handler's exceptions fail its event


@contextlib.contextmanager
def event_context(env: Envelope) -> Iterator[None]:
    """Bind the :class:`~meshkit.basis.context.RequestContext` of ``env`` (its trace, its id as request id)."""
    headers = {context.REQUEST_ID: env.id}
    if env.traceparent:
        headers[context.TRACEPARENT] = env.traceparent
    token = context.bind(context.RequestContext.from_headers(headers))
    try:
        yield
    finally:
        context.reset(token)


__all__ = ["event_context", "is_failure"]
