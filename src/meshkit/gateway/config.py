"""The routes file, as pydantic models.

A routes file is YAML a person can read::

    defaults:                     # merged into every route (a route's own keys win)
      timeout: 5s
    routes:
      - name: catalog-read
        match: {prefix: /api/catalog/, methods: [GET, HEAD]}
        upstream: {service: catalog}
        rewrite: {prefix: /}
        cache: {ttl: 30s}
        rate_limit: {rate: 100, burst: 200, key: ip}

Durations are numbers of seconds or strings such as ``250ms``, ``5s``, ``2m``.
See :mod:`meshkit.gateway.loader` for reading a file with line numbers in errors.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def _duration(value: Any) -> Any:
    if isinstance(value, str):
        m = _DURATION.match(value)
        if not m:
            raise ValueError(f"{value!r} is not a duration: write seconds (5, 0.25) or 250ms, 5s, 2m, 1h")
        return float(m.group(1)) * _UNITS[m.group(2)]
    return value


Duration = Annotated[float, BeforeValidator(_duration), Field(ge=0)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Match(_Model):
    """What a request must look like. Exactly one of ``path`` and ``prefix``.

    ``path`` is exact (``/healthz``) or a pattern with ``{param}`` segments and a
    final wildcard ``*`` or ``{rest...}``; ``prefix`` matches every path that starts with it.
    """

    path: str | None = None
    prefix: str | None = None
    methods: list[str] | None = None
    host: str | None = None

    @model_validator(mode="after")
    def _one_of(self) -> Match:
        if (self.path is None) == (self.prefix is None):
            raise ValueError("give exactly one of 'path' and 'prefix'")
        return self

    @field_validator("path", "prefix")
    @classmethod
    def _slash(cls, v: str | None) -> str | None:
        if v is not None and not v.startswith("/"):
            raise ValueError(f"{v!r} must start with '/'")
        return v

    @field_validator("methods")
    @classmethod
    def _methods(cls, v: list[str] | None) -> list[str] | None:
        if v is None:
            return v
        out = [m.upper() for m in v]
        bad = [m for m in out if m not in METHODS]
        if bad:
            raise ValueError(f"unknown method(s) {bad}; use {sorted(METHODS)}")
        return out

    @field_validator("host")
    @classmethod
    def _host(cls, v: str | None) -> str | None:
        return v.lower() if v else v


_URL = re.compile(r"^http://[^/:]+(:\d+)?(/.*)?$")


def _check_url(url: str) -> None:
    if url.startswith("https://"):
        raise ValueError(f"url {url!r}: the gateway speaks plain HTTP to upstreams (no TLS client), so "
                         "https:// would send plain text to a TLS port; use http:// on a private network")
    m = _URL.match(url)
    if not m:
        raise ValueError(f"url {url!r} must look like http://host:port[/base]")
    if m.group(1) and not 0 < int(m.group(1)[1:]) <= 65535:
        raise ValueError(f"url {url!r}: port {m.group(1)[1:]} is not between 1 and 65535")


class Canary(_Model):
    """Send ``percent`` % of requests to instances of ``version``; ``sticky`` keeps a caller on one side."""

    version: str
    percent: float = Field(ge=0, le=100)
    sticky: Literal["none", "user", "client"] = "none"


class Upstream(_Model):
    """Where a route sends requests: a service by name (through the registry) or a static URL."""

    service: str | None = None
    url: str | None = None
    balancer: Literal["p2c", "round_robin"] = "p2c"
    #: Blue-green: send all traffic to this version only (change it to switch).
    version: str | None = None
    canary: Canary | None = None

    @model_validator(mode="after")
    def _one_of(self) -> Upstream:
        if (self.service is None) == (self.url is None):
            raise ValueError("give exactly one of 'service' and 'url'")
        if self.url is not None:
            _check_url(self.url)
        if self.url is not None and (self.version or self.canary):
            raise ValueError("'version' and 'canary' need a service, not a static url")
        return self


class Rewrite(_Model):
    """Change the upstream path: replace the matched prefix with ``prefix``, or build ``path`` from params."""

    prefix: str | None = None
    path: str | None = None

    @model_validator(mode="after")
    def _one_of(self) -> Rewrite:
        if (self.prefix is None) == (self.path is None):
            raise ValueError("give exactly one of 'prefix' and 'path'")
        return self


class Retry(_Model):
    """Retries of idempotent requests on connect errors and the listed statuses."""

    attempts: int = Field(default=2, ge=0, le=10)
    backoff: Duration = 0.01
    backoff_max: Duration = 0.5
    on_status: list[int] = [502, 503, 504]


class RateLimit(_Model):
    """A token bucket per route and key: ``rate`` per second, up to ``burst`` at once."""

    rate: float = Field(gt=0)
    burst: int = Field(ge=1)
    key: Literal["ip", "user", "apikey"] = "ip"


class Cache(_Model):
    """Cache GET/HEAD answers for ``ttl`` (or the upstream's max-age); keep them ``stale_if_error`` longer."""

    ttl: Duration
    vary: list[str] = []
    stale_if_error: Duration = 300.0
    max_entry_bytes: int = Field(default=1024 * 1024, gt=0)


class Limits(_Model):
    """Bulkhead and load shedding for one route."""

    max_concurrency: int | None = Field(default=None, ge=1)
    #: How long a request may wait for a free slot before it is shed.
    queue_timeout: Duration = 0.05
    #: Shed when the upstream's recent latency exceeds this while requests queue up.
    shed_latency: Duration | None = None
    max_body_bytes: int | None = Field(default=None, gt=0)


class Fault(_Model):
    """Inject faults on purpose: delay and/or abort a percentage of requests."""

    delay: Duration = 0.0
    delay_percent: float = Field(default=0.0, ge=0, le=100)
    abort_status: int = Field(default=503, ge=400, le=599)
    abort_percent: float = Field(default=0.0, ge=0, le=100)


class Fallback(_Model):
    """A static answer when the upstream fails and nothing is cached."""

    status: int = Field(default=200, ge=200, le=599)
    body: Any = None
    content_type: str | None = None


class Cors(_Model):
    """Cross-origin rules for a route."""

    allow_origins: list[str] = ["*"]
    allow_methods: list[str] = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"]
    allow_headers: list[str] = ["authorization", "content-type", "x-api-key", "x-request-id"]
    expose_headers: list[str] = ["x-request-id", "x-cache"]
    allow_credentials: bool = False
    max_age: int = 600

    @model_validator(mode="after")
    def _no_wildcard_with_credentials(self) -> Cors:
        # "*" with credentials would let any site read this route's answers with the visitor's
        # cookies or credentials (the spec forbids the pair; echoing the origin instead allows it).
        if self.allow_credentials and "*" in self.allow_origins:
            raise ValueError("allow_credentials with allow_origins '*' lets every site read answers made "
                             "with its visitors' credentials: list the origins allowed")
        if "null" in (o.lower() for o in self.allow_origins):
            raise ValueError("origin 'null' is sent by sandboxed frames and local files, which any site can "
                             "make: list real origins")
        return self


class Part(_Model):
    """One backend of an aggregate route; ``path`` may use the route's ``{params}``."""

    service: str | None = None
    url: str | None = None
    path: str = "/"
    timeout: Duration = 2.0

    @model_validator(mode="after")
    def _one_of(self) -> Part:
        if (self.service is None) == (self.url is None):
            raise ValueError("give exactly one of 'service' and 'url'")
        if self.url is not None:
            _check_url(self.url)
        return self


class Aggregate(_Model):
    """Fan out to named parts concurrently and merge their JSON into one object."""

    parts: dict[str, Part] = Field(min_length=1)


class Route(_Model):
    """One route: how to recognise a request and what to do with it."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.:-]+$")
    match: Match
    upstream: Upstream | None = None
    aggregate: Aggregate | None = None
    rewrite: Rewrite | None = None
    timeout: Duration = 10.0
    retry: Retry = Retry()
    auth: Literal["required", "optional", "none"] = "none"
    roles: list[str] = []
    permissions: list[str] = []
    rate_limit: RateLimit | None = None
    cache: Cache | None = None
    limits: Limits = Limits()
    fault: Fault | None = None
    fallback: Fallback | None = None
    cors: Cors | None = None
    #: Stream the upstream's answer through instead of buffering it (large downloads).
    stream: bool = False

    @model_validator(mode="after")
    def _target(self) -> Route:
        if (self.upstream is None) == (self.aggregate is None):
            raise ValueError("give exactly one of 'upstream' and 'aggregate'")
        if (self.roles or self.permissions) and self.auth == "none":
            raise ValueError("'roles'/'permissions' need 'auth: required' (or optional)")
        if self.rate_limit and self.rate_limit.key in ("user", "apikey") and self.auth == "none":
            raise ValueError(f"rate_limit key '{self.rate_limit.key}' needs auth on this route "
                             "(an unverified credential cannot name a bucket)")
        return self


class RoutesFile(_Model):
    """The whole routes file."""

    version: Literal[1] = 1
    defaults: dict[str, Any] = {}
    routes: list[Route] = []

    @model_validator(mode="before")
    @classmethod
    def _defaults(cls, data: Any) -> Any:
        # Merge defaults into each route before validating it, one level deep for mappings.
        if isinstance(data, dict) and isinstance(data.get("defaults"), dict) and isinstance(data.get("routes"), list):
            merged = []
            for r in data["routes"]:
                if isinstance(r, dict):
                    out = dict(data["defaults"])
                    for k, v in r.items():
                        out[k] = {**out[k], **v} if isinstance(v, dict) and isinstance(out.get(k), dict) else v
                    r = out
                merged.append(r)
            data = {**data, "routes": merged}
        return data
