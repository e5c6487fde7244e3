"""Catalog transport: HTTP handlers for ``/products`` (decode, call a use case, encode)."""

from meshkit.services.catalog.transport.handlers import ProductHandlers
from meshkit.services.catalog.transport.routes import API_VERSION, ENDPOINTS, Endpoint, routes

__all__ = ["API_VERSION", "ENDPOINTS", "Endpoint", "ProductHandlers", "routes"]
