"""The catalog's AsyncAPI document (the events it publishes), committed as ``catalog_sdk/asyncapi.json``.

A test fails when the committed file drifts. Regenerate after changing an event::

    python -m meshkit.services.catalog.asyncapi --write
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from meshkit.basis.bus import asyncapi
from meshkit.services.catalog import sdkdoc
from meshkit.services.catalog.transport.routes import API_VERSION
from meshkit.services.catalog_sdk.events import EVENTS


def document() -> dict[str, Any]:
    """The document as a dict."""
    return asyncapi.document(
        "catalog", API_VERSION, publishes=EVENTS,
        description="Product changes, published through the catalog's transactional outbox on stream CATALOG. "
                    "Delivery is at least once: deduplicate by event id (meshkit.basis.inbox).",
    )


def render() -> bytes:
    """The committed bytes."""
    return asyncapi.render(document())


def sdk_path() -> Path:
    """``catalog_sdk/asyncapi.json``."""
    return sdkdoc.sdk_file("asyncapi.json")


def main(argv: list[str] | None = None) -> int:
    """Print the document, or with ``--write`` store it in the SDK package."""
    return sdkdoc.cli(argv, render, "asyncapi.json")


if __name__ == "__main__":
    raise SystemExit(main())
