"""The catalog's generated documents committed in its SDK package (``openapi.json``, ``asyncapi.json``).

:mod:`~meshkit.services.catalog.openapi` and :mod:`~meshkit.services.catalog.asyncapi`
build the documents; this module says where they are committed and gives both
the same command line (print, or ``--write`` into the SDK package).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path


def sdk_file(name: str) -> Path:
    """Where the committed document ``name`` lives: ``catalog_sdk/<name>``."""
    import meshkit.services.catalog_sdk as sdk

    return Path(sdk.__file__).with_name(name)


def cli(argv: list[str] | None, render: Callable[[], bytes], name: str) -> int:
    """Print ``render()``, or with ``--write`` store it as ``catalog_sdk/<name>``."""
    args = sys.argv[1:] if argv is None else argv
    data = render()
    if "--write" in args:
        path = sdk_file(name)
        path.write_bytes(data)
        print(f"wrote {path}", file=sys.stderr)
    else:
        sys.stdout.buffer.write(data)
    return 0


__all__ = ["cli", "sdk_file"]
