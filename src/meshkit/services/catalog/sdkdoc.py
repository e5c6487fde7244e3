"""Where the catalog's generated documents are committed: its SDK package (``openapi.json``, ``asyncapi.json``).

:mod:`~meshkit.services.catalog.openapi` and :mod:`~meshkit.services.catalog.asyncapi`
build the documents; both get the command line of :func:`meshkit.basis.sdkdoc.cli`
(print, or ``--write`` into the SDK package).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from meshkit.basis import sdkdoc


def sdk_file(name: str) -> Path:
    """Where the committed document ``name`` lives: ``catalog_sdk/<name>``."""
    return sdkdoc.sdk_file("meshkit.services.catalog_sdk", name)


def cli(argv: list[str] | None, render: Callable[[], bytes], name: str) -> int:
    """Print ``render()``, or with ``--write`` store it as ``catalog_sdk/<name>``."""
    return sdkdoc.cli(argv, render, sdk_file(name))


__all__ = ["cli", "sdk_file"]
