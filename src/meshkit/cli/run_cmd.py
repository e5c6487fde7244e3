"""``meshkit run``: one service in the foreground, by name (system file) or by module.

The process is replaced by ``python -m <module>`` (same pid), so Ctrl-C, a
debugger and the exit code belong to the service itself.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import sys

from meshkit.basis.errors import ConfigError
from meshkit.cli.probe import nats_answers, nats_url
from meshkit.cli.system import ServiceDef, load_system, system_path


def resolve(target: str, system_file: str | None) -> tuple[str, ServiceDef | None]:
    """``(module, service definition or None)`` for a service name or a module path."""
    system = load_system(system_file)
    svc = system.get(target)
    if svc is not None:
        return svc.module, svc
    try:
        found = importlib.util.find_spec(target)
    except (ImportError, ValueError):
        found = None
    if found is None:
        names = ", ".join(s.name for s in system.services)
        raise ConfigError(
            f"{target!r} is neither a service of {system_path(system_file)} ({names}) nor an importable "
            "module: give a service name or a module like meshkit.services.catalog.main"
        )
    return target, None


def run_env(svc: ServiceDef | None) -> dict[str, str]:
    """The system file's settings for the service (if it has any), then our environment."""
    env = svc.service_env() if svc is not None else {}
    env.update(os.environ)
    env.setdefault("PYTHONUNBUFFERED", "1")
    if svc is not None:
        # Distinct from the <name>-<n> ids of `meshkit up`, which may be running beside it.
        env.setdefault("MESHKIT_INSTANCE_ID", f"{svc.name}-run-{os.getpid()}")
    return env


def command(target: str, system_file: str | None) -> int:
    """Exec the service; returns only when it cannot start (exit code)."""
    try:
        module, svc = resolve(target, system_file)
    except ConfigError as exc:
        print(f"meshkit run: {exc.message}", file=sys.stderr)
        return 2
    registry = os.environ.get("MESHKIT_REGISTRY_URL", "")
    if not registry.startswith("memory:"):
        url = nats_url()
        if not asyncio.run(nats_answers(url)):
            print(f"meshkit run: nothing answers at {url}: start NATS with `meshkit up` (or `make up`) "
                  "in another terminal, or set MESHKIT_NATS_URL", file=sys.stderr)
            return 1
    argv = [sys.executable, "-m", module]
    sys.stdout.flush()
    os.execve(sys.executable, argv, run_env(svc))
    return 0  # not reached: execve replaced us
