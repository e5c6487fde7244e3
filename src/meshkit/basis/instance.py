"""What the registry knows about one running instance of a service."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import orjson


@dataclass(frozen=True, slots=True)
class Instance:
    """One registered instance of a service.

    ``metadata`` carries free-form labels; ``zone`` and ``weight`` (an integer,
    default 1) are understood by the load balancers.
    """

    service: str
    instance_id: str
    address: str
    port: int
    version: str = "0.0.0"
    metadata: dict[str, Any] = field(default_factory=dict)
    started_at: float = field(default_factory=time.time)
    status: str = "up"

    @property
    def key(self) -> str:
        """The registry key: ``<service>.<instance_id>``."""
        return f"{self.service}.{self.instance_id}"

    @property
    def url(self) -> str:
        return f"http://{self.address}:{self.port}"

    @property
    def weight(self) -> int:
        try:
            return max(0, int(self.metadata.get("weight", 1)))
        except (TypeError, ValueError):
            return 1

    def to_json(self) -> bytes:
        return orjson.dumps(
            {
                "service": self.service,
                "instance_id": self.instance_id,
                "address": self.address,
                "port": self.port,
                "version": self.version,
                "metadata": self.metadata,
                "started_at": self.started_at,
                "status": self.status,
            }
        )

    @classmethod
    def from_json(cls, raw: bytes | str) -> Instance:
        d = orjson.loads(raw)
        return cls(
            service=d["service"],
            instance_id=d["instance_id"],
            address=d["address"],
            port=int(d["port"]),
            version=d.get("version", "0.0.0"),
            metadata=d.get("metadata") or {},
            started_at=float(d.get("started_at", 0.0)),
            status=d.get("status", "up"),
        )
