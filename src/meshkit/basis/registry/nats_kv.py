"""Registry on a NATS JetStream key-value bucket.

One entry per instance: key ``<service>.<instance_id>``, value the instance's
JSON plus its ``ttl``. How entries die matters more than how they live:

- Every put (register, heartbeat) carries a per-message TTL (``Nats-TTL``,
  whole seconds, rounded up). If the heartbeats stop, the server removes the
  entry and, because the bucket has ``limit_marker_ttl``, writes a delete marker
  that every watcher receives. Per-message TTLs (rather than one bucket max-age)
  let each service pick its own ttl in one shared bucket.
- The server's expiry is coarse (it fires up to ~0.3 s late) and a watcher may
  miss a marker across a reconnect, so :class:`~.view.RegistryView` also expires
  entries locally from the ``ttl`` carried in the value.
- ``kv.get`` returns an expiry marker as if it were a live entry with an empty
  value, so this module never uses ``get``: :meth:`list` reads the last message
  per key through a pull consumer, :meth:`watch` through a KV watch, and both
  drop markers (by operation and empty value).
- When the connection drops, every watch ends with :class:`Unavailable`; the
  view watches again once the client has reconnected and reconciles with the
  fresh snapshot, so deletes missed during the outage are not missed for good.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import re
import uuid
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import parse_qs

import nats
import nats.errors
import nats.js.errors
import orjson
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy, KeyValueConfig, StorageType
from nats.js.kv import KeyValue

from meshkit.basis.errors import BadRequest, ConfigError, NotFound, Unavailable
from meshkit.basis.instance import Instance
from meshkit.basis.registry import RegistryEvent

log = logging.getLogger("meshkit.registry")

DEFAULT_BUCKET = "meshkit_registry"
_KEY_RE = re.compile(r"^[-/_=a-zA-Z0-9]+(\.[-/_=a-zA-Z0-9]+)+$")
_DELETES = ("DEL", "PURGE")
_StopIter = type(KeyValue.KeyWatcher.STOP_ITER)
#: How long a watch waits for more snapshot entries when nats-py says "delivered" before any
#: entry said it was the last (an empty bucket, or entries still in flight).
SNAPSHOT_SETTLE_S = 0.05


class _Watch:
    """Handle on one open watch, so a lost connection can end it."""

    __slots__ = ("lost", "watcher")

    def __init__(self, watcher: KeyValue.KeyWatcher) -> None:
        self.watcher = watcher
        self.lost = False

    def end(self, lost: bool) -> None:
        self.lost = self.lost or lost
        queue = self.watcher._updates  # nats-py's own queue: wake the iterator now
        while True:
            try:
                queue.put_nowait(KeyValue.KeyWatcher.STOP_ITER)
                return
            except asyncio.QueueFull:
                queue.get_nowait()


class NatsKVRegistry:
    """A :class:`~meshkit.basis.registry.Registry` on a NATS KV bucket.

    Open it with :meth:`connect`; ``nats://host:port?bucket=name`` picks the
    bucket (default ``meshkit_registry``).
    """

    def __init__(self, nc: Any, kv: KeyValue, bucket: str, *, timeout: float, marker_ttl: float) -> None:
        self._nc = nc
        self._js = nc.jetstream(timeout=timeout)
        self._kv = kv
        self.bucket = bucket
        self.timeout = timeout
        self.marker_ttl = marker_ttl
        self._prefix = f"$KV.{bucket}."
        self._ttls: dict[str, float] = {}  # keys this client registered -> ttl
        self._watches: set[_Watch] = set()
        self._closed = False

    @classmethod
    async def connect(
        cls,
        url: str,
        *,
        bucket: str | None = None,
        timeout: float = 2.0,
        marker_ttl: float = 5.0,
        reconnect_wait: float = 0.25,
    ) -> NatsKVRegistry:
        """Connect to NATS at ``url`` and open (or create) the registry bucket."""
        base, _, query = url.partition("?")
        params = {k: v[-1] for k, v in parse_qs(query).items()}
        bucket = bucket or params.get("bucket") or DEFAULT_BUCKET
        servers = [s.strip() for s in base.split(",") if s.strip()]
        holder: list[NatsKVRegistry] = []

        async def disconnected() -> None:
            if holder:
                holder[0]._connection_lost()

        async def reconnected() -> None:
            log.info("registry reconnected to NATS at %s", nc.connected_url.netloc if nc.connected_url else "?")

        async def error(exc: Exception) -> None:
            log.debug("registry NATS client error: %s: %s", type(exc).__name__, exc)

        try:
            nc = await nats.connect(
                servers,
                name="meshkit-registry",
                connect_timeout=timeout,
                allow_reconnect=True,
                # Fail fast if NATS is not there at start (-1 would retry forever)...
                max_reconnect_attempts=2,
                reconnect_time_wait=reconnect_wait,
                disconnected_cb=disconnected,
                reconnected_cb=reconnected,
                error_cb=error,
            )
        except Exception as exc:
            raise Unavailable(
                f"cannot reach NATS at {base} for the registry ({type(exc).__name__}): start it "
                "(meshkit up starts one) or point MESHKIT_NATS_URL / MESHKIT_REGISTRY_URL at a running server",
                reason="registry.unavailable",
            ) from exc
        # ...but once connected, never give up: the registry must outlive NATS restarts.
        nc.options["max_reconnect_attempts"] = -1
        try:
            kv = await _open_bucket(nc.jetstream(timeout=timeout), bucket, marker_ttl)
        except BaseException:
            await nc.close()
            raise
        reg = cls(nc, kv, bucket, timeout=timeout, marker_ttl=marker_ttl)
        holder.append(reg)
        return reg

    # -- writes -------------------------------------------------------------------------

    async def register(self, instance: Instance, ttl: float) -> None:
        """Put ``instance``; the server removes it ``ttl`` seconds (rounded up) after the last put."""
        if ttl <= 0:
            raise BadRequest(f"registry ttl must be positive, got {ttl}: pass the seconds an entry lives")
        self._check_key(instance.key)
        self._ttls[instance.key] = ttl
        await self._put(instance, ttl)

    async def heartbeat(self, instance: Instance) -> None:
        """Put ``instance`` again: restarts its TTL (and publishes changed fields)."""
        ttl = self._ttls.get(instance.key)
        if ttl is None:
            raise NotFound(
                f"instance {instance.key} was not registered by this client: register it first",
                reason="registry.not_registered",
            )
        await self._put(instance, ttl)

    async def deregister(self, instance: Instance) -> None:
        """Remove ``instance`` now: a purge marker (which itself expires) replaces it."""
        self._ttls.pop(instance.key, None)
        headers = {"KV-Operation": "PURGE", "Nats-Rollup": "sub", "Nats-TTL": _ttl_header(self.marker_ttl)}
        await self._publish(instance.key, b"", headers)

    async def _put(self, instance: Instance, ttl: float) -> None:
        body = orjson.loads(instance.to_json())
        body["ttl"] = ttl
        await self._publish(instance.key, orjson.dumps(body), {"Nats-TTL": _ttl_header(ttl)})

    async def _publish(self, key: str, payload: bytes, headers: dict[str, str]) -> None:
        if self._closed:
            raise Unavailable("registry is closed", reason="registry.closed")
        try:
            await self._js.publish(self._prefix + key, payload, timeout=self.timeout, headers=headers)
        except (TimeoutError, nats.errors.Error) as exc:
            raise Unavailable(
                f"registry write of {key} failed ({type(exc).__name__}: {exc}); NATS may be down, "
                "the write is retried by the heartbeat",
                reason="registry.unavailable",
            ) from exc

    # -- reads --------------------------------------------------------------------------

    async def list(self, service: str | None = None) -> list[Instance]:
        """Live instances, read from a snapshot of the bucket (markers dropped).

        The snapshot is an ephemeral pull consumer (last message per key): its
        creation says how many messages it holds, and each fetched message how
        many are left, so the read ends when the snapshot does. nats-py's KV watch
        marks "initial values delivered" too early when they are in flight at
        set-up (nats-io/nats.py#842), which made ``list`` return nothing.
        """
        if self._closed:
            raise Unavailable("registry is closed", reason="registry.closed")
        stream = f"KV_{self.bucket}"
        config = ConsumerConfig(
            name=f"list_{uuid.uuid4().hex}",
            filter_subject=self._prefix + (f"{service}.>" if service else ">"),
            deliver_policy=DeliverPolicy.LAST_PER_SUBJECT,
            ack_policy=AckPolicy.NONE,
            inactive_threshold=30.0,  # the server drops it even if we cannot
            mem_storage=True,
            num_replicas=1,
        )
        out: list[Instance] = []
        try:
            info = await self._js.add_consumer(stream, config=config)
            left = info.num_pending
            if left:
                sub = await self._js.pull_subscribe_bind(config.name, stream=stream)
                try:
                    while left:
                        for msg in await sub.fetch(batch=min(left, 256), timeout=self.timeout):
                            left = msg.metadata.num_pending
                            headers = msg.headers or {}
                            event = self._event(msg.subject[len(self._prefix):], headers.get("KV-Operation"), msg.data)
                            if event is not None and event.instance is not None:
                                if service is None or event.instance.service == service:
                                    out.append(event.instance)
                finally:
                    with contextlib.suppress(Exception):
                        await sub.unsubscribe()
            with contextlib.suppress(Exception):
                await self._js.delete_consumer(stream, config.name)
        except (TimeoutError, nats.errors.Error) as exc:
            raise Unavailable(
                f"cannot read registry bucket {self.bucket} ({type(exc).__name__}: {exc})",
                reason="registry.unavailable",
            ) from exc
        return out

    async def watch(self) -> AsyncIterator[RegistryEvent]:
        """Current entries, ``sync``, then changes; ends with :class:`Unavailable`
        if the connection to NATS drops (watch again after a pause)."""
        handle = _Watch(await self._open_watch(">"))
        self._watches.add(handle)
        try:
            # The snapshot, with a deadline per entry: if nats-py never sends its
            # end-of-initial-data marker (None), fail and let the caller watch again.
            stopped = False
            left: int | None = None  # what the last snapshot entry said was left after it
            while True:
                try:
                    entry = await handle.watcher.updates(timeout=self.timeout)
                except nats.errors.TimeoutError:
                    raise Unavailable(
                        "registry watch did not finish its snapshot", reason="registry.unavailable"
                    ) from None
                if entry is None:  # nats-py: the initial values are all delivered
                    # ... which it can say while they are still in flight (nats-io/nats.py#842):
                    # believe it once an entry said nothing was left, else after a quiet moment.
                    while left != 0:
                        try:
                            entry = await handle.watcher.updates(timeout=SNAPSHOT_SETTLE_S)
                        except nats.errors.TimeoutError:
                            break
                        if isinstance(entry, _StopIter):
                            stopped = True
                            break
                        if entry is not None:
                            left = entry.delta
                            event = self._event(entry.key, entry.operation, entry.value)
                            if event is not None:
                                yield event
                    if not stopped:
                        yield RegistryEvent("sync", "")
                    break
                if isinstance(entry, _StopIter):
                    stopped = True
                    break
                left = entry.delta
                event = self._event(entry.key, entry.operation, entry.value)
                if event is not None:
                    yield event
            if not stopped:
                async for entry in handle.watcher:  # ends at the STOP_ITER sentinel
                    event = self._event(entry.key, entry.operation, entry.value) if entry is not None else None
                    if event is not None:
                        yield event
            if handle.lost:
                raise Unavailable("registry watch lost its NATS connection", reason="registry.unavailable")
        finally:
            self._watches.discard(handle)
            await _stop(handle.watcher)

    async def _open_watch(self, keys: str) -> KeyValue.KeyWatcher:
        if self._closed:
            raise Unavailable("registry is closed", reason="registry.closed")
        try:
            return await self._kv.watch(keys, inactive_threshold=30.0)
        except (TimeoutError, nats.errors.Error) as exc:
            raise Unavailable(
                f"cannot watch registry bucket {self.bucket} ({type(exc).__name__}: {exc})",
                reason="registry.unavailable",
            ) from exc

    def _event(self, key: str, operation: str | None, value: bytes | None) -> RegistryEvent | None:
        if operation in _DELETES or not value:
            return RegistryEvent("delete", key)
        try:
            body = orjson.loads(value)
            instance = Instance.from_json(value)
            ttl = float(body.get("ttl") or 0) or None
        except (ValueError, KeyError, TypeError) as exc:
            log.warning("registry entry %s is not an instance (%s); ignored", key, exc)
            return None
        return RegistryEvent("put", key, instance, ttl)

    # -- connection ---------------------------------------------------------------------

    def _connection_lost(self) -> None:
        if self._watches:
            log.warning("registry lost its NATS connection; %d watch(es) will resume", len(self._watches))
        for handle in list(self._watches):
            handle.end(lost=True)

    async def close(self) -> None:
        """End every watch and close the NATS connection."""
        if self._closed:
            return
        self._closed = True
        for handle in list(self._watches):
            handle.end(lost=False)
        await asyncio.sleep(0)  # let watch generators run their cleanup
        try:
            await self._nc.close()
        except Exception as exc:  # closing is best effort
            log.debug("closing the registry NATS connection: %s", exc)

    @staticmethod
    def _check_key(key: str) -> None:
        if not _KEY_RE.match(key):
            raise BadRequest(
                f"registry key {key!r} is invalid: service names and instance ids may use letters, "
                "digits, '-', '_', '=' and '/' only",
                reason="registry.bad_key",
            )


def _ttl_header(seconds: float) -> str:
    # The server keeps whole seconds (it truncates "1500ms" to 1s): round up so an
    # entry never dies before its ttl; the view's local expiry is the precise one.
    return f"{max(1, math.ceil(seconds))}s"


async def _stop(watcher: KeyValue.KeyWatcher) -> None:
    try:
        await watcher.stop()
    except Exception as exc:  # closed or reconnecting connection: the server drops it later
        log.debug("stopping a registry watch: %s", exc)


async def _open_bucket(js: Any, bucket: str, marker_ttl: float) -> KeyValue:
    """Bind the bucket, creating it on first use; refuse one without expiry markers."""
    try:
        kv = await js.key_value(bucket)
    except nats.js.errors.BucketNotFoundError:
        config = KeyValueConfig(
            bucket=bucket,
            description="meshkit service registry: <service>.<instance_id> -> instance JSON",
            history=1,
            storage=StorageType.FILE,
            limit_marker_ttl=marker_ttl,
        )
        try:
            kv = await js.create_key_value(config)
        except nats.js.errors.BadRequestError:  # created by another process meanwhile
            kv = await js.key_value(bucket)
    except (TimeoutError, nats.errors.Error) as exc:
        raise Unavailable(
            f"cannot open registry bucket {bucket!r} ({type(exc).__name__}: {exc}): is JetStream enabled "
            "on the NATS server (nats-server -js)?",
            reason="registry.unavailable",
        ) from exc
    status = await kv.status()
    config = status.stream_info.config
    if not config.allow_msg_ttl or not config.subject_delete_marker_ttl:
        raise ConfigError(
            f"registry bucket {bucket!r} exists without per-message TTLs or expiry markers "
            "(created by another tool?): delete it (nats kv del) or choose another bucket with "
            "?bucket=NAME in the registry URL"
        )
    return kv
