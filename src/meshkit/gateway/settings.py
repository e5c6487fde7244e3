"""Typed settings of the gateway (env prefix ``GATEWAY_``), built in ``main``."""

from __future__ import annotations

from pathlib import Path

from pydantic_settings import SettingsConfigDict

from meshkit.basis.settings import ServiceSettings


class GatewaySettings(ServiceSettings):
    """Everything the gateway reads from its environment (``GATEWAY_PORT``, ``GATEWAY_ROUTES_FILE``...)."""

    model_config = SettingsConfigDict(env_prefix="GATEWAY_", extra="ignore", populate_by_name=True)

    name: str = "gateway"
    port: int = 8080
    #: Processes serving the public port together (SO_REUSEPORT; the kernel spreads
    #: connections). 1 = this process only; 0 = one per CPU core. Worker 0 (the one
    #: started) registers, serves the admin API and supervises the others. Per-worker
    #: state: a ``memory://`` rate limit and the response cache are per worker — use a
    #: ``redis://`` rate limit for one exact limit across workers.
    workers: int = 1
    #: Set by worker 0 for the workers it starts (not a user setting).
    worker_index: int = 0
    #: The admin API (routes, upstreams, reload, cache purge): loopback only unless you mean it.
    admin_host: str = "127.0.0.1"
    admin_port: int = 9080
    #: The routes file; default: the one shipped with meshkit (catalog under /api/catalog/).
    routes_file: Path | None = None
    #: Seconds between checks of the routes file for changes (0 = only on an admin call).
    reload_interval: float = 1.0

    tls_cert: Path | None = None
    tls_key: Path | None = None

    jwks_url: str | None = None
    issuer: str | None = None
    audience: str | None = None
    leeway: float = 30.0
    #: API keys from a YAML/JSON file of key hashes (deployments without an SSO).
    api_keys_file: str | None = None
    #: The service that owns API keys (``sso`` under ``meshkit up``): keys are checked there,
    #: cached for ``api_keys_cache_ttl`` seconds (a revoked key works at most that long).
    #: Set this or ``api_keys_file``, not both.
    api_keys_service: str | None = None
    api_keys_cache_ttl: float = 10.0
    #: Seconds a key lookup at that service may take before the request answers 503.
    api_keys_timeout: float = 2.0
    #: Failed authentications a client address may cause: ``auth_failure_rate`` a second, at most
    #: ``auth_failure_burst`` at once; past that, 429 for any credential the gateway would have to
    #: check (each costs a signature check or an API-key lookup), until the budget refills.
    auth_failure_rate: float = 10.0
    auth_failure_burst: int = 100
    #: ``memory://`` (per gateway) or ``redis://host:6379/0`` (shared by every gateway instance).
    rate_limit_url: str = "memory://"

    max_header_bytes: int = 16 * 1024
    max_body_bytes: int = 10 * 1024 * 1024
    keepalive_timeout: float = 75.0
    #: Open client connections per gateway process; one more is answered 503 and closed.
    max_connections: int = 10_000
    cache_max_bytes: int = 64 * 1024 * 1024
    upstream_max_connections: int = 512
    #: Take the client address from ``X-Forwarded-For``: its last address, the one the load
    #: balancer in front added (only behind one trusted load balancer that appends to it); and
    #: the scheme passed on from its ``X-Forwarded-Proto`` (last value, ``http`` or ``https``).
    trust_forwarded: bool = False
    #: Serve ``/metrics`` on the public port too (the admin port always does).
    public_metrics: bool = True

    breaker_failure_ratio: float = 0.5
    breaker_min_calls: int = 20
    breaker_open_for: float = 5.0
    #: Consecutive failures that eject an instance, and the first ejection period (seconds).
    eject_after: int = 5
    eject_for: float = 10.0
    retry_budget_ratio: float = 0.2
