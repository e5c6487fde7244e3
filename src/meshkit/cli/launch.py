"""How ``meshkit up`` launches a service instance: its environment, its fixed port, and
the checks made before anything starts (so mistakes fail fast, with one clear line).
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

from meshkit.basis.errors import ConfigError
from meshkit.basis.natsd import port_in_use
from meshkit.cli.system import ServiceDef, SystemDef, system_path


def child_env(service_env: dict[str, str], *, nats_url: str, data_dir: Path, instance_id: str,
              environ: dict[str, str] | None = None, identity_key: str | None = None) -> dict[str, str]:
    """The environment of one instance, later layers winning: the system file's settings,
    then ours (so ``CATALOG_LOG_LEVEL=debug meshkit up`` works), then the platform's.

    ``identity_key`` (one per run, the same for every instance) is the key of the gateway's
    seal on the identity it passes on (meshkit.basis.seal), unless ``MESHKIT_IDENTITY_KEY``
    is set already: a service reached directly, past the gateway, then ignores a forged identity.
    """
    env = dict(service_env)
    env.update(os.environ if environ is None else environ)
    if identity_key is not None:
        env.setdefault("MESHKIT_IDENTITY_KEY", identity_key)
    # Plain TCP to NATS: the services skip nats-py's WebSocket import (meshkit.basis.natsimport).
    env.setdefault("MESHKIT_NATS_WEBSOCKET", "1" if nats_url.lower().startswith(("ws://", "wss://")) else "0")
    env.update(
        MESHKIT_NATS_URL=nats_url,
        MESHKIT_DATA_DIR=str(data_dir),
        MESHKIT_INSTANCE_ID=instance_id,
        PYTHONUNBUFFERED="1",  # lines reach the terminal as they are printed, not per 8 KiB
    )
    return env


def fixed_port(svc: ServiceDef, environ: dict[str, str] | None = None) -> tuple[int | None, str]:
    """The port a fixed-port service will bind, and where that came from (for messages).

    ``<PREFIX>PORT`` in our environment wins over ``port:`` in the system file.
    """
    env = os.environ if environ is None else environ
    setting = f"{svc.prefix}PORT"
    raw = env.get(setting)
    if raw:
        try:
            return int(raw), setting
        except ValueError:
            raise ConfigError(f"{setting}={raw!r} is not a port number: set it to a free port") from None
    return svc.port, f"{setting} (or `port:` of {svc.name} in the system file)"


def check_modules(system: SystemDef, system_file: str | None = None) -> None:
    """Refuse a module that does not exist now, rather than after three crashes."""
    here = os.getcwd()
    added = here not in sys.path
    if added:  # children run `python -m`, which finds modules in their cwd (ours) too
        sys.path.insert(0, here)
    try:
        for svc in system.services:
            try:
                found = importlib.util.find_spec(svc.module)
            except (ImportError, ValueError):
                found = None
            if found is None:
                raise ConfigError(
                    f"module {svc.module} of service {svc.name} in {system_path(system_file)} "
                    "cannot be found: check its spelling, or install the package that provides it"
                )
    finally:
        if added:
            sys.path.remove(here)


def check_fixed_ports(system: SystemDef) -> None:
    """Refuse to start when a fixed port is taken, naming the setting that moves it."""
    for svc in system.services:
        port, setting = fixed_port(svc)
        if port is not None and port_in_use("127.0.0.1", port):
            raise ConfigError(
                f"port {port} for {svc.name} is already in use: set {setting} to a free port "
                "(or stop what holds it)"
            )


def process_age() -> float:
    """Seconds since this process started (Linux: from /proc; elsewhere 0)."""
    try:
        with open("/proc/self/stat") as f:
            start_ticks = int(f.read().rsplit(")", 1)[1].split()[19])
        with open("/proc/uptime") as f:
            uptime = float(f.read().split()[0])
        return max(0.0, uptime - start_ticks / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError):
        return 0.0


def skip_websocket_support(nats_url: str) -> None:
    """Keep nats-py from importing aiohttp (for its WebSocket transport) in this process.

    That import is most of nats-py's (≈0.3 s of CPU) and competes with the services
    starting beside us; we talk plain TCP. ``None`` in ``sys.modules`` makes the import
    fail, which nats-py handles by leaving WebSocket support out.
    """
    if "aiohttp" not in sys.modules and not nats_url.lower().startswith(("ws://", "wss://")):
        sys.modules["aiohttp"] = None  # type: ignore[assignment]
