"""The storefront's HTTP endpoints."""

from meshkit.services.storefront.transport.routes import routes

__all__ = ["routes"]
