"""Run every benchmark in turn: ``python -m bench`` (``make bench``), or some: ``python -m bench client gateway``.

Each benchmark is a module ``bench/<name>.py`` with ``main(argv) -> int``; it runs
meshkit and its peer side by side in the same run and prints a table with ratios.
"""

from __future__ import annotations

import importlib
import platform
import sys
import time

#: In the order they run. A module listed here must exist.
BENCHMARKS: list[str] = ["startup", "asgi_server", "http_transport", "client", "gateway", "jwt_verify", "sso", "events"]


def main(argv: list[str]) -> int:
    names = argv or BENCHMARKS
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        print(f"unknown benchmark(s): {', '.join(unknown)}; choose from: {', '.join(BENCHMARKS)}")
        return 2
    print(f"# meshkit benchmarks — {time.strftime('%Y-%m-%d %H:%M')} — {platform.node()} "
          f"({platform.machine()}, {platform.python_version()})")
    failed = 0
    for name in names:
        print(f"\n## {name}", flush=True)
        module = importlib.import_module(f"bench.{name}")
        failed += 1 if module.main([]) else 0
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
