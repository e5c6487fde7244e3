"""Plain ASGI types and small helpers shared by the middleware."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from meshkit.basis.context import REQUEST_ID, TRACEPARENT, RequestContext

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

#: Where the context middleware leaves the request's :class:`RequestContext` in the scope.
CONTEXT_KEY = "meshkit.context"
#: Where the context middleware records the response status once the response starts:
#: the steps inside it (access log, metrics) and the error step outside it read it
#: there instead of each wrapping ``send`` again (a wrapper per step per message).
STATUS_KEY = "meshkit.status"

_REQUEST_ID = REQUEST_ID.encode()
_TRACEPARENT = TRACEPARENT.encode()


def response_headers(ctx: RequestContext) -> list[tuple[bytes, bytes]]:
    """The correlation headers a response carries back: request id and our traceparent."""
    return [(_REQUEST_ID, ctx.request_id.encode()), (_TRACEPARENT, ctx.traceparent.encode())]
