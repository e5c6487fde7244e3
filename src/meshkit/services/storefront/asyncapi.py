"""The storefront's AsyncAPI document (the catalog events it consumes), committed as
``storefront_sdk/asyncapi.json``.

A test fails when the committed file drifts. Regenerate after changing what it consumes::

    python -m meshkit.services.storefront.asyncapi --write
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from meshkit.basis import sdkdoc
from meshkit.basis.bus import asyncapi
from meshkit.services.catalog_sdk.events import EVENTS, PRODUCT_EVENTS
from meshkit.services.storefront.transport.routes import API_VERSION


def document() -> dict[str, Any]:
    """The document as a dict."""
    return asyncapi.document(
        "storefront", API_VERSION, consumes=[(PRODUCT_EVENTS, EVENTS)],
        description="The storefront keeps its own copy of the catalog's products from these events "
                    "(meshkit.basis.projection.keep_copy); it publishes none.",
    )


def render() -> bytes:
    """The committed bytes."""
    return asyncapi.render(document())


def sdk_path() -> Path:
    """``storefront_sdk/asyncapi.json``."""
    return sdkdoc.sdk_file("meshkit.services.storefront_sdk", "asyncapi.json")


def main(argv: list[str] | None = None) -> int:
    """Print the document, or with ``--write`` store it in the SDK package."""
    return sdkdoc.cli(argv, render, sdk_path())


if __name__ == "__main__":
    raise SystemExit(main())
