"""Keep one instance registered: register, heartbeat, deregister.

A service owns one :class:`Registration` for its lifetime. The heartbeat runs in
a background task; a failed heartbeat is logged and retried, and an entry that
vanished (expired during a pause, or lost with the registry's data) is
registered again, so an instance heals itself after any registry outage.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from typing import Any

from meshkit.basis.errors import ConfigError, NotFound
from meshkit.basis.instance import Instance
from meshkit.basis.registry import Registry
from meshkit.basis.tasks import stop_task

log = logging.getLogger("meshkit.registry")


class Registration:
    """Registers ``instance`` in ``registry`` and keeps it alive.

    >>> reg = Registration(registry, instance, ttl=3.0, interval=1.0)
    >>> await reg.start()            # registered; heartbeats every second
    >>> await reg.update(status="draining")
    >>> await reg.stop()             # deregistered (graceful stop)

    If the process dies, heartbeats stop and the entry expires ``ttl`` seconds
    after the last one.
    """

    def __init__(self, registry: Registry, instance: Instance, ttl: float = 3.0, interval: float = 1.0) -> None:
        if ttl <= 0 or interval <= 0:
            raise ConfigError(f"registry ttl ({ttl}) and heartbeat interval ({interval}) must be positive")
        if interval >= ttl:
            raise ConfigError(
                f"heartbeat interval ({interval}s) must be shorter than the registry ttl ({ttl}s), "
                "or every instance expires between heartbeats: lower MESHKIT_HEARTBEAT_INTERVAL "
                "or raise MESHKIT_REGISTRY_TTL"
            )
        self.registry = registry
        self.instance = instance
        self.ttl = ttl
        self.interval = interval
        self._task: asyncio.Task[None] | None = None
        #: Heartbeats that failed since the last one that worked.
        self.failures = 0
        #: ``time.monotonic()`` of the last successful register or heartbeat.
        self.last_ok = 0.0

    @property
    def running(self) -> bool:
        """True while the heartbeat task runs."""
        return self._task is not None and not self._task.done()

    async def start(self) -> None:
        """Register now, then heartbeat every ``interval`` seconds in the background."""
        await self.registry.register(self.instance, self.ttl)
        self.last_ok = time.monotonic()
        log.info(
            "registered %s at %s (ttl %.1fs)",
            self.instance.key,
            self.instance.url,
            self.ttl,
            extra={"key": self.instance.key},
        )
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._beat(), name=f"meshkit-heartbeat-{self.instance.key}")

    async def update(self, **changes: Any) -> Instance:
        """Change fields of the registered instance (``status="draining"``,
        ``metadata={...}``) and publish the change at once."""
        self.instance = dataclasses.replace(self.instance, **changes)
        await self._heartbeat_once()
        return self.instance

    async def stop(self, deregister: bool = True) -> None:
        """Stop heartbeating; deregister unless ``deregister`` is false."""
        task, self._task = self._task, None
        await stop_task(task)
        if deregister:
            try:
                await self.registry.deregister(self.instance)
                log.info("deregistered %s", self.instance.key, extra={"key": self.instance.key})
            except Exception as exc:  # the entry will expire on its own
                log.warning(
                    "deregistering %s failed (%s: %s); it expires within %.1fs",
                    self.instance.key,
                    type(exc).__name__,
                    exc,
                    self.ttl,
                    extra={"key": self.instance.key},
                )

    async def _heartbeat_once(self) -> None:
        try:
            await self.registry.heartbeat(self.instance)
        except NotFound:
            log.warning(
                "registry entry %s vanished; registering again", self.instance.key, extra={"key": self.instance.key}
            )
            await self.registry.register(self.instance, self.ttl)
        self.last_ok = time.monotonic()

    async def _beat(self) -> None:
        # Retry a failed heartbeat sooner than the interval: the entry has only
        # ttl - interval seconds of slack before it expires.
        retry = min(self.interval, max(0.1, (self.ttl - self.interval) / 4))
        delay = self.interval
        while True:
            await asyncio.sleep(delay)
            started = time.monotonic()
            try:
                await self._heartbeat_once()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.failures += 1
                level = logging.WARNING if self.failures == 1 or self.failures % 10 == 0 else logging.DEBUG
                log.log(
                    level,
                    "heartbeat for %s failed (%s: %s); retrying",
                    self.instance.key,
                    type(exc).__name__,
                    exc,
                    extra={"key": self.instance.key, "failures": self.failures},
                )
                delay = retry
                continue
            if self.failures:
                log.info(
                    "heartbeat for %s works again after %d failure(s)",
                    self.instance.key,
                    self.failures,
                    extra={"key": self.instance.key},
                )
                self.failures = 0
            # Keep the period steady whatever the heartbeat itself took.
            delay = max(0.0, self.interval - (time.monotonic() - started))
