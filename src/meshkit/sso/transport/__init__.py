"""SSO transport: HTTP handlers (decode, call a use case, encode) and the route table."""

from meshkit.sso.transport.admin import AdminHandlers
from meshkit.sso.transport.public import PublicHandlers, PublicOptions
from meshkit.sso.transport.routes import ADMIN, PUBLIC, routes

__all__ = ["ADMIN", "PUBLIC", "AdminHandlers", "PublicHandlers", "PublicOptions", "routes"]
