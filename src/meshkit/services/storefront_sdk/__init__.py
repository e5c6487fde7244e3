"""The storefront's contract for other services: its AsyncAPI document.

The storefront publishes no events; it consumes the catalog's product events
(``catalog.product.>`` on stream ``CATALOG``) to keep its own copy of the
products. ``asyncapi.json`` here says so, for whoever changes those events.
It is generated from the code; after a change, regenerate it (a test fails
while the committed file is stale)::

    python -m meshkit.services.storefront.asyncapi --write

This package imports nothing of the service itself (an import-linter contract
checks that).
"""

from importlib import resources


def asyncapi_json() -> bytes:
    """The committed AsyncAPI document."""
    return resources.files(__name__).joinpath("asyncapi.json").read_bytes()


__all__ = ["asyncapi_json"]
