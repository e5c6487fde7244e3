"""The route template of a handled request: the metrics and access-log label."""

from __future__ import annotations

from starlette.routing import Mount

from meshkit.basis.metrics import UNMATCHED
from meshkit.basis.middleware.asgi import Scope


def route_template(scope: Scope, root_path: str = "") -> str:
    """``/items/{id}`` for a request routed there; ``<unmatched>`` when no route matched.

    Starlette's router leaves the matched route in ``scope["route"]`` (the scope
    dict is shared down the stack, so it is there once the handler returns).
    Under a :class:`Mount` the inner route's path is relative: the prefix the
    mount consumed (``root_path`` grown since ``root_path`` at entry) is put back.
    """
    route = scope.get("route")
    if route is None:
        return UNMATCHED
    path = getattr(route, "path", None)
    if path is None:
        return UNMATCHED
    if isinstance(route, Mount):
        return (path or "/") + "/*"
    grown = scope.get("root_path", "")
    if len(grown) > len(root_path):
        return grown[len(root_path):] + path
    return path
