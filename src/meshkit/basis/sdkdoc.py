"""Documents generated from a service's code and committed in its SDK package (OpenAPI, AsyncAPI).

Each service gives its documents one command line: print the document, or with
``--write`` store it in the SDK package, where a test compares the committed
bytes with what the code generates now.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from pathlib import Path


def sdk_file(package: str, name: str) -> Path:
    """Where the document ``name`` of SDK package ``package`` (e.g. ``meshkit.sso_sdk``) is committed."""
    return Path(importlib.import_module(package).__file__ or "").with_name(name)


def cli(argv: list[str] | None, render: Callable[[], bytes], path: Path) -> int:
    """Print ``render()``, or with ``--write`` store it at ``path``."""
    args = sys.argv[1:] if argv is None else argv
    data = render()
    if "--write" in args:
        path.write_bytes(data)
        print(f"wrote {path}", file=sys.stderr)
    else:
        sys.stdout.buffer.write(data)
    return 0


__all__ = ["cli", "sdk_file"]
