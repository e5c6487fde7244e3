"""Typed settings every service shares.

A service subclasses :class:`ServiceSettings`, gives it its own env prefix and
adds its own fields; it is built in the service's ``main``, never at import::

    class CatalogSettings(ServiceSettings):
        model_config = SettingsConfigDict(env_prefix="CATALOG_")
        name: str = "catalog"
        page_size_max: int = 200

Platform-wide values (where NATS is, the data dir) are read from ``MESHKIT_*``
variables whatever the service prefix, so one ``MESHKIT_NATS_URL`` serves the
whole stack; everything else uses the service's prefix (``CATALOG_PORT``...).
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


def _platform(name: str, field_name: str) -> AliasChoices:
    # An alias bypasses the env prefix: the platform-wide variable is read for every
    # service, and the plain field name still works as a keyword argument.
    return AliasChoices(field_name, f"MESHKIT_{name}")


class ServiceSettings(BaseSettings):
    """Settings common to every meshkit service."""

    model_config = SettingsConfigDict(env_prefix="MESHKIT_SERVICE_", extra="ignore", populate_by_name=True)

    name: str = "service"
    version: str = "0.1.0"
    host: str = "127.0.0.1"
    #: 0 picks a free port; the registry records the one actually bound.
    port: int = 0
    #: The address other services use to reach this one (defaults to ``host``).
    advertise_host: str | None = None
    instance_id: str = Field(
        default_factory=lambda: f"{socket.gethostname()}-{os.getpid()}",
        validation_alias=_platform("INSTANCE_ID", "instance_id"),
    )
    metadata: dict[str, Any] = Field(default_factory=dict)

    data_dir: Path = Field(default=Path(".meshkit"), validation_alias=_platform("DATA_DIR", "data_dir"))
    nats_url: str = Field(default="nats://127.0.0.1:4223", validation_alias=_platform("NATS_URL", "nats_url"))
    #: Where instances register; defaults to the NATS server (``nats://``), or ``memory://``.
    registry_url: str | None = Field(default=None, validation_alias=_platform("REGISTRY_URL", "registry_url"))
    #: SQLAlchemy URL; default: a SQLite file per service under ``data_dir``.
    database_url: str | None = None

    #: A crashed instance leaves every view at most ``registry_ttl`` (+0.1 s grace)
    #: after its last heartbeat: 2.5 s keeps "gone within 3 s of a SIGKILL" true
    #: even for a kill right after a heartbeat.
    registry_ttl: float = Field(default=2.5, validation_alias=_platform("REGISTRY_TTL", "registry_ttl"))
    heartbeat_interval: float = Field(default=0.8, validation_alias=_platform("HEARTBEAT_INTERVAL", "heartbeat_interval"))
    #: Seconds given to in-flight requests after a stop signal.
    drain_timeout: float = 10.0
    log_level: str = Field(default="info", validation_alias=_platform("LOG_LEVEL", "log_level"))
    #: Default per-call timeout of the service client, seconds.
    call_timeout: float = 5.0

    # Runtime switches (meshkit.basis.service): the middleware steps that may be turned off.
    #: One JSON access-log line per request.
    access_log: bool = True
    #: Prometheus request metrics (``/metrics`` still serves what the service adds).
    request_metrics: bool = True
    #: Requests handled at once; over it a request gets 503 at once (load shedding). 0 = no cap.
    max_concurrency: int = 0
    #: Largest request body accepted (413 above it, before it is read). 0 = no limit.
    max_body_bytes: int = 10 * 1024 * 1024
    #: Seconds each readiness check of ``/readyz`` may take.
    check_timeout: float = 2.0
    #: The embedded HTTP server: ``granian`` or ``uvicorn`` (see meshkit.basis.server).
    http_server: str = Field(default="granian", validation_alias=_platform("HTTP_SERVER", "http_server"))
    #: ``MESHKIT_IDENTITY_KEY``: the key of the gateway's seal on the identity it injects (hex, 32
    #: bytes or more; ``meshkit up`` makes one). Set, identity headers count only under a valid
    #: seal (meshkit.basis.seal); unset, they are believed (only the gateway must reach the service).
    identity_key: SecretStr | None = Field(default=None, validation_alias=_platform("IDENTITY_KEY", "identity_key"))

    @property
    def registry(self) -> str:
        return self.registry_url or self.nats_url

    @property
    def database(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{self.data_dir / (self.name + '.db')}"

    @property
    def address(self) -> str:
        return self.advertise_host or self.host
