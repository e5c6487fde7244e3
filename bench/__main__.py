"""Run every benchmark in turn: ``python -m bench`` (``make bench``), or some: ``python -m bench client gateway``.

Each benchmark is a module ``bench/<name>.py`` with ``main(argv) -> int``; it runs
meshkit and its peer side by side in the same run and prints a table with ratios.
Options after the names go to each named benchmark (``python -m bench gateway
--duration 10``); ``python -m bench.<name> --help`` lists a benchmark's own.
"""

from __future__ import annotations

import importlib
import platform
import sys
import time

#: In the order they run. A module listed here must exist.
BENCHMARKS: list[str] = ["startup", "asgi_server", "http_transport", "client", "gateway", "jwt_verify", "sso", "events"]


USAGE = f"""usage: python -m bench [NAME ...] [OPTIONS]

Runs the named benchmarks (all of them when none is named), each beside its
peer in the same run, and prints tables with ratios. OPTIONS (anything from the
first argument that starts with '-') go to every named benchmark; see
`python -m bench.NAME --help` for a benchmark's own options.

benchmarks, in the order they run: {", ".join(BENCHMARKS)}
"""


def main(argv: list[str]) -> int:
    if argv and argv[0] in ("-h", "--help"):
        print(USAGE, end="")
        return 0
    split = next((i for i, a in enumerate(argv) if a.startswith("-")), len(argv))
    names, options = argv[:split] or BENCHMARKS, argv[split:]
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
        failed += 1 if module.main(options) else 0
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
