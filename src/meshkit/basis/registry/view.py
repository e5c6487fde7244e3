"""A local, always-current copy of the registry, fed by a watch.

Clients resolve a service through :meth:`RegistryView.instances`: a dict lookup
that returns a list built once per change, so the hot path does no I/O and no
allocation. The view keeps itself current from :meth:`Registry.watch`, survives
watch failures by watching again (with backoff) and reconciling, and expires an
entry locally if its heartbeats stop and the backend's delete never arrives.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass

from meshkit.basis.errors import Unavailable
from meshkit.basis.instance import Instance
from meshkit.basis.registry import Registry, RegistryEvent
from meshkit.basis.tasks import stop_task

log = logging.getLogger("meshkit.registry")

_EMPTY: list[Instance] = []


@dataclass(slots=True)
class _Entry:
    instance: Instance
    ttl: float
    timer: asyncio.TimerHandle | None = None


class RegistryView:
    """Live instances per service, kept current by a background watch.

    ``grace`` is added to an entry's ttl before the view drops it on its own
    (the backend's delete normally comes first). While the watch is down the
    view keeps what it knew and stops expiring locally: missing heartbeats then
    say nothing about the instances. The next successful watch reconciles.
    """

    def __init__(
        self,
        registry: Registry,
        *,
        grace: float = 0.1,
        default_ttl: float = 3.0,
        backoff_min: float = 0.05,
        backoff_max: float = 2.0,
    ) -> None:
        self.registry = registry
        self.grace = grace
        self.default_ttl = default_ttl
        self.backoff_min = backoff_min
        self.backoff_max = backoff_max
        self._entries: dict[str, _Entry] = {}
        self._groups: dict[str, dict[str, _Entry]] = {}  # service -> key -> entry
        # service -> instances with status "up", rebuilt only when that service changes
        self._by_service: dict[str, list[Instance]] = {}
        self._callbacks: list[Callable[[str], object]] = []
        self._synced = asyncio.Event()
        self._changed = asyncio.Event()
        self._expiring = False  # local expiry runs only while the watch is healthy
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        #: How many times the watch was (re)established; for health pages and tests.
        self.watches = 0

    # -- lifecycle ----------------------------------------------------------------------

    async def start(self, timeout: float = 10.0) -> RegistryView:
        """Start watching; return once the initial state is loaded."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="meshkit-registry-view")
        try:
            await asyncio.wait_for(self._synced.wait(), timeout)
        except TimeoutError:
            raise Unavailable(
                f"registry view did not sync within {timeout}s: check that the registry "
                f"({type(self.registry).__name__}) is reachable",
                reason="registry.unavailable",
            ) from None
        return self

    async def close(self) -> None:
        """Stop watching and forget local timers (the registry itself stays open)."""
        self._closed = True
        if self._task is not None:
            await stop_task(self._task)
            self._task = None
        self._stop_expiry()

    async def __aenter__(self) -> RegistryView:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- reads (no I/O) -----------------------------------------------------------------

    def instances(self, service: str) -> list[Instance]:
        """Live instances of ``service`` whose status is ``up``.

        The list is shared and replaced on change: read it, never mutate it.
        """
        return self._by_service.get(service, _EMPTY)

    def services(self) -> dict[str, list[Instance]]:
        """Every service with at least one live ``up`` instance."""
        return {name: items for name, items in self._by_service.items() if items}

    def all_instances(self) -> list[Instance]:
        """Every live entry, whatever its status (for status pages)."""
        return [e.instance for e in self._entries.values()]

    @property
    def synced(self) -> bool:
        """True once the initial state was loaded."""
        return self._synced.is_set()

    def subscribe(self, callback: Callable[[str], object]) -> Callable[[], None]:
        """Call ``callback(service_name)`` after every change to that service.

        Returns a function that unsubscribes. Heartbeats that change nothing do
        not call it. A callback must be quick and must not raise (errors are logged).
        """
        self._callbacks.append(callback)

        def unsubscribe() -> None:
            with contextlib.suppress(ValueError):
                self._callbacks.remove(callback)

        return unsubscribe

    async def wait_for(self, service: str, count: int = 1, timeout: float = 5.0) -> list[Instance]:
        """Wait until ``service`` has at least ``count`` live instances; return them.

        Raises :class:`Unavailable` after ``timeout`` seconds.
        """
        deadline = time.monotonic() + timeout
        while len(self.instances(service)) < count:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise Unavailable(
                    f"service {service!r} has {len(self.instances(service))} live instance(s), "
                    f"wanted {count}, after {timeout}s: check that it started and registered",
                    reason="registry.wait_timeout",
                    details={"service": service, "have": len(self.instances(service)), "want": count},
                )
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), remaining)
        return self.instances(service)

    # -- the watch loop -----------------------------------------------------------------

    async def _run(self) -> None:
        delay = self.backoff_min
        failures = 0
        while not self._closed:
            seen: set[str] | None = set()  # keys of the current watch's snapshot, until sync
            try:
                async for event in self.registry.watch():
                    if event.kind == "sync":
                        self._reconcile(seen or set())
                        seen = None
                        if failures:
                            log.info("registry watch re-established after %d failure(s)", failures)
                        delay, failures = self.backoff_min, 0
                        continue
                    if seen is not None:
                        seen.add(event.key)
                    self._apply(event)
                if not self._closed:
                    raise Unavailable("registry watch ended", reason="registry.unavailable")
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                failures += 1
                self._stop_expiry()
                level = logging.WARNING if failures == 1 or failures % 20 == 0 else logging.DEBUG
                log.log(
                    level,
                    "registry watch failed (%s: %s); watching again in %.2fs",
                    type(exc).__name__,
                    exc,
                    delay,
                    extra={"failures": failures},
                )
            if self._closed:
                return
            await asyncio.sleep(delay * (0.5 + random.random() / 2))
            delay = min(delay * 2, self.backoff_max)

    def _apply(self, event: RegistryEvent) -> None:
        if event.kind == "put" and event.instance is not None:
            ttl = event.ttl or self.default_ttl
            entry = self._entries.get(event.key)
            if entry is not None and entry.instance.service != event.instance.service:
                self._remove(event.key)  # a key never changes service; be safe if it does
                entry = None
            if entry is None:
                entry = self._entries[event.key] = _Entry(event.instance, ttl)
                self._groups.setdefault(event.instance.service, {})[event.key] = entry
                self._arm(event.key, entry)
                self._rebuild(event.instance.service)
            else:
                changed = entry.instance != event.instance
                entry.instance, entry.ttl = event.instance, ttl
                self._arm(event.key, entry)
                if changed:
                    self._rebuild(event.instance.service)
        elif event.kind == "delete":
            self._remove(event.key)

    def _reconcile(self, seen: set[str]) -> None:
        """After a (re)watch's snapshot: drop what vanished meanwhile, restart expiry."""
        for key in [k for k in self._entries if k not in seen]:
            self._remove(key)
        self.watches += 1
        self._expiring = True
        for key, entry in self._entries.items():
            self._arm(key, entry)
        self._synced.set()
        self._changed.set()

    def _remove(self, key: str) -> None:
        entry = self._entries.pop(key, None)
        if entry is None:
            return
        if entry.timer is not None:
            entry.timer.cancel()
        group = self._groups.get(entry.instance.service)
        if group is not None:
            group.pop(key, None)
            if not group:
                del self._groups[entry.instance.service]
        self._rebuild(entry.instance.service)

    # -- local expiry -------------------------------------------------------------------

    def _arm(self, key: str, entry: _Entry) -> None:
        if entry.timer is not None:
            entry.timer.cancel()
            entry.timer = None
        if self._expiring:
            entry.timer = asyncio.get_running_loop().call_later(
                entry.ttl + self.grace, self._expire, key, entry
            )

    def _stop_expiry(self) -> None:
        self._expiring = False
        for entry in self._entries.values():
            if entry.timer is not None:
                entry.timer.cancel()
                entry.timer = None

    def _expire(self, key: str, entry: _Entry) -> None:
        if self._entries.get(key) is not entry or not self._expiring:
            return
        log.info(
            "registry entry %s dropped locally: no heartbeat for %.1fs",
            key,
            entry.ttl + self.grace,
            extra={"key": key},
        )
        self._remove(key)

    # -- change fan-out -----------------------------------------------------------------

    def _rebuild(self, service: str) -> None:
        up = [e.instance for e in self._groups.get(service, {}).values() if e.instance.status == "up"]
        if up:
            self._by_service[service] = up
        else:
            self._by_service.pop(service, None)
        self._changed.set()
        for callback in list(self._callbacks):
            try:
                callback(service)
            except Exception:
                log.exception("registry view subscriber %r failed", callback)
