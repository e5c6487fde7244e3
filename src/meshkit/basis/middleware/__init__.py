"""The runtime's middleware: plain ASGI classes composed in one declared order.

Outermost first::

    errors → context → access log → metrics → drain gate → body limit → concurrency cap → handler

- errors (always): any exception becomes the JSON error shape; never a traceback.
- context (always): request id, traceparent, deadline, identity bound for the request.
- access log (``settings.access_log``): one JSON line per request.
- metrics (``settings.request_metrics``): Prometheus request count / in-flight / duration.
- drain gate (always): in-flight count; refuses new requests during graceful stop.
- body limit (``settings.max_body_bytes`` > 0): 413 for a body over the limit, before it is read.
- concurrency cap (``settings.max_concurrency`` > 0): sheds load beyond the cap.

Errors and context are the platform's contract (JSON errors, ids on every hop), so
they cannot be switched off; the gate is what graceful stop stands on.
"""

from __future__ import annotations

from dataclasses import dataclass

from meshkit.basis.metrics import ServiceMetrics
from meshkit.basis.middleware.access import AccessLogMiddleware
from meshkit.basis.middleware.asgi import CONTEXT_KEY, ASGIApp
from meshkit.basis.middleware.body_limit import BodyLimit
from meshkit.basis.middleware.concurrency import ConcurrencyLimit
from meshkit.basis.middleware.context import ContextMiddleware, context_from_scope
from meshkit.basis.middleware.errors import ErrorMiddleware, send_error, status_of, translate
from meshkit.basis.middleware.gate import DrainGate
from meshkit.basis.middleware.metrics import MetricsMiddleware
from meshkit.basis.middleware.route import route_template


@dataclass(frozen=True, slots=True)
class StackOptions:
    """Which switchable steps are on (from the service's settings)."""

    access_log: bool = True
    request_metrics: bool = True
    max_concurrency: int = 0
    max_body_bytes: int = 0
    #: The key of the gateway's identity seal (see meshkit.basis.seal); None: identity headers believed.
    identity_key: bytes | None = None


def build_stack(
    handler: ASGIApp, *, metrics: ServiceMetrics, options: StackOptions, service: str = ""
) -> tuple[ASGIApp, DrainGate]:
    """Wrap ``handler`` in the middleware, in the declared order; returns the app and its gate."""
    app = handler
    # Built inside out: the last wrapped is the outermost.
    if options.max_concurrency > 0:
        app = ConcurrencyLimit(app, options.max_concurrency)
    if options.max_body_bytes > 0:
        app = BodyLimit(app, options.max_body_bytes)
    gate = DrainGate(app)
    app = gate
    if options.request_metrics:
        app = MetricsMiddleware(app, metrics)
    if options.access_log:
        app = AccessLogMiddleware(app)
    app = ContextMiddleware(app, options.identity_key)
    app = ErrorMiddleware(app, service=service)
    return app, gate


__all__ = [
    "CONTEXT_KEY",
    "AccessLogMiddleware",
    "BodyLimit",
    "ConcurrencyLimit",
    "ContextMiddleware",
    "DrainGate",
    "ErrorMiddleware",
    "MetricsMiddleware",
    "StackOptions",
    "build_stack",
    "context_from_scope",
    "route_template",
    "send_error",
    "status_of",
    "translate",
]
