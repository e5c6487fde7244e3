"""In-process registry: a dict with per-entry TTL and watches.

Used by unit tests and by components that run in one process (``memory://``
URLs). It behaves like the NATS KV backend: an entry that misses its heartbeats
expires ``ttl`` seconds after the last one and every watcher gets a delete.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import ClassVar

from meshkit.basis.errors import BadRequest, NotFound
from meshkit.basis.instance import Instance
from meshkit.basis.registry import RegistryEvent

log = logging.getLogger("meshkit.registry")

# Wakes a watcher so that it ends (the registry was closed).
_END = None


@dataclass(slots=True)
class _Entry:
    instance: Instance
    ttl: float
    deadline: float  # time.monotonic() after which the entry is dead
    timer: asyncio.TimerHandle | None = None


class MemoryRegistry:
    """A :class:`~meshkit.basis.registry.Registry` held in this process.

    Several components of one process share an instance through
    :meth:`shared`, keyed by URL (``memory://test-a``); each caller's
    :meth:`close` releases its share and only the last one ends the watches.
    """

    _shared: ClassVar[dict[str, MemoryRegistry]] = {}

    def __init__(self, name: str = "memory://") -> None:
        self.name = name
        self._entries: dict[str, _Entry] = {}
        self._watchers: set[asyncio.Queue[RegistryEvent | None]] = set()
        self._refs = 1

    @classmethod
    def shared(cls, url: str = "memory://") -> MemoryRegistry:
        """The one registry of this process for ``url``; created on first use."""
        reg = cls._shared.get(url)
        if reg is None:
            reg = cls._shared[url] = cls(url)
        else:
            reg._refs += 1
        return reg

    # -- writes -------------------------------------------------------------------------

    async def register(self, instance: Instance, ttl: float) -> None:
        """Add or replace ``instance``; it expires ``ttl`` seconds after its last heartbeat."""
        if ttl <= 0:
            raise BadRequest(f"registry ttl must be positive, got {ttl}: pass the seconds an entry lives")
        old = self._entries.pop(instance.key, None)
        if old is not None and old.timer is not None:
            old.timer.cancel()
        entry = _Entry(instance, ttl, time.monotonic() + ttl)
        self._entries[instance.key] = entry
        self._arm(instance.key, entry)
        self._emit(RegistryEvent("put", instance.key, instance, ttl))

    async def heartbeat(self, instance: Instance) -> None:
        """Refresh ``instance`` (and take its new fields, e.g. ``status``).

        Raises :class:`NotFound` if it expired or was deregistered: the caller
        registers it again.
        """
        entry = self._live(instance.key)
        if entry is None:
            raise NotFound(
                f"instance {instance.key} is not registered (expired or deregistered): register it again",
                reason="registry.not_registered",
            )
        entry.instance = instance
        entry.deadline = time.monotonic() + entry.ttl
        self._arm(instance.key, entry)
        self._emit(RegistryEvent("put", instance.key, instance, entry.ttl))

    async def deregister(self, instance: Instance) -> None:
        """Remove ``instance`` now; watchers see a delete."""
        entry = self._entries.pop(instance.key, None)
        if entry is None:
            return
        if entry.timer is not None:
            entry.timer.cancel()
        self._emit(RegistryEvent("delete", instance.key))

    # -- reads --------------------------------------------------------------------------

    async def list(self, service: str | None = None) -> list[Instance]:
        """Live instances, of one service or of all."""
        now = time.monotonic()
        return [
            e.instance
            for e in self._entries.values()
            if e.deadline > now and (service is None or e.instance.service == service)
        ]

    async def watch(self) -> AsyncIterator[RegistryEvent]:
        """Current entries as puts, a ``sync`` event, then every change."""
        queue: asyncio.Queue[RegistryEvent | None] = asyncio.Queue()
        # Snapshot and subscribe in one step (no await between): no change is lost.
        now = time.monotonic()
        snapshot = [(k, e.instance, e.ttl) for k, e in self._entries.items() if e.deadline > now]
        self._watchers.add(queue)
        try:
            for key, instance, ttl in snapshot:
                yield RegistryEvent("put", key, instance, ttl)
            yield RegistryEvent("sync", "")
            while True:
                event = await queue.get()
                if event is _END:
                    return
                yield event
        finally:
            self._watchers.discard(queue)

    async def close(self) -> None:
        """Release this caller's share; the last one ends every watch."""
        self._refs -= 1
        if self._refs > 0:
            return
        for queue in self._watchers:
            queue.put_nowait(_END)

    # -- internals ----------------------------------------------------------------------

    def _live(self, key: str) -> _Entry | None:
        entry = self._entries.get(key)
        if entry is None or entry.deadline <= time.monotonic():
            return None
        return entry

    def _arm(self, key: str, entry: _Entry) -> None:
        if entry.timer is not None:
            entry.timer.cancel()
        entry.timer = asyncio.get_running_loop().call_at(
            asyncio.get_running_loop().time() + entry.ttl, self._expire, key, entry
        )

    def _expire(self, key: str, entry: _Entry) -> None:
        if self._entries.get(key) is not entry:
            return
        remaining = entry.deadline - time.monotonic()
        if remaining > 0:  # refreshed in the meantime, or the loop clock runs ahead
            entry.timer = asyncio.get_running_loop().call_later(remaining, self._expire, key, entry)
            return
        del self._entries[key]
        log.info(
            "registry entry %s expired: no heartbeat for %.1fs",
            key,
            entry.ttl,
            extra={"registry": self.name, "key": key},
        )
        self._emit(RegistryEvent("delete", key))

    def _emit(self, event: RegistryEvent) -> None:
        for queue in self._watchers:
            queue.put_nowait(event)
