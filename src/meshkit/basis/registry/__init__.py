"""Service registry: who is running, where.

A backend implements :class:`Registry` and is chosen by URL scheme with
:func:`open_registry`:

- ``nats://host:port`` (default) — a NATS JetStream KV bucket; an entry expires
  when its instance stops heartbeating.
- ``memory://`` — in-process, for unit tests.

Clients do not ask the registry per call: they keep a :class:`~.view.RegistryView`
fed by :meth:`Registry.watch`, so resolving a service costs no round-trip.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable

from meshkit.basis.instance import Instance


@dataclass(frozen=True, slots=True)
class RegistryEvent:
    """A change seen by :meth:`Registry.watch`.

    ``kind`` is ``"put"`` (registered or refreshed) or ``"delete"`` (deregistered
    or expired). For a delete, ``instance`` is ``None`` and ``key`` names it.
    A watch first yields the current entries as puts, then one ``"sync"`` event
    marking that the initial state is complete, then live changes.
    ``ttl`` (on puts) is the entry's time to live in seconds, so a watcher can
    expire it locally if the delete never arrives.
    """

    kind: Literal["put", "delete", "sync"]
    key: str
    instance: Instance | None = None
    ttl: float | None = None


@runtime_checkable
class Registry(Protocol):
    """What every registry backend provides."""

    async def register(self, instance: Instance, ttl: float) -> None:
        """Add ``instance``; it expires ``ttl`` seconds after its last heartbeat."""

    async def heartbeat(self, instance: Instance) -> None:
        """Keep ``instance`` alive for another ``ttl``."""

    async def deregister(self, instance: Instance) -> None:
        """Remove ``instance`` now (graceful stop)."""

    async def list(self, service: str | None = None) -> list[Instance]:
        """Live instances, of one service or of all."""

    def watch(self) -> AsyncIterator[RegistryEvent]:
        """Current entries, a ``sync`` marker, then every change, until closed."""

    async def close(self) -> None:
        """Release connections."""


async def open_registry(url: str) -> Registry:
    """Open the registry backend that ``url``'s scheme names."""
    scheme = url.split("://", 1)[0].lower()
    if scheme == "memory":
        from meshkit.basis.registry.memory import MemoryRegistry

        return MemoryRegistry.shared(url)
    if scheme in ("nats", "tls"):
        from meshkit.basis.registry.nats_kv import NatsKVRegistry

        return await NatsKVRegistry.connect(url)
    from meshkit.basis.errors import ConfigError

    raise ConfigError(f"unknown registry URL scheme {scheme!r} in {url!r}: use nats:// or memory://")


# Re-exported after the definitions above, which these modules import.
from meshkit.basis.registry.memory import MemoryRegistry  # noqa: E402
from meshkit.basis.registry.registration import Registration  # noqa: E402
from meshkit.basis.registry.view import RegistryView  # noqa: E402

__all__ = [
    "Instance",
    "MemoryRegistry",
    "Registration",
    "Registry",
    "RegistryEvent",
    "RegistryView",
    "open_registry",
]
