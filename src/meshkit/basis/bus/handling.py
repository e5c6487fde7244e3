"""How a handler runs: in the event's request context, and which of its exceptions fail the event.

Shared by the consumers, the followers and the inbox.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator

from meshkit.basis import context
from meshkit.basis.bus.envelope import Envelope


def is_failure(exc: BaseException) -> bool:
    """Whether a handler's exception is a failure of its event (retried), not a stop of the process.

    ``KeyboardInterrupt``, ``SystemExit`` and the cancellation of the running task
    (the consumer stopping) propagate; anything else — a ``BaseException`` subclass
    of the handler's own, a ``CancelledError`` it caught from something else — fails the event.
    """
    if isinstance(exc, KeyboardInterrupt | SystemExit):
        return False
    if isinstance(exc, asyncio.CancelledError):
        task = asyncio.current_task()
        return not (task is not None and task.cancelling())
    return True


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
