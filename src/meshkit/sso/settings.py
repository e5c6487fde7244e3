"""The SSO's settings: ``SSO_*`` variables (and the platform-wide ``MESHKIT_*`` ones)."""

from __future__ import annotations

import ipaddress
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import SettingsConfigDict

from meshkit.basis.settings import ServiceSettings
from meshkit.sso_sdk.events import RETENTION_MARGIN


class SsoSettings(ServiceSettings):
    """Settings of the SSO service.

    Secrets (``SSO_KEY_ENCRYPTION_KEY``, ``SSO_ADMIN_PASSWORD``) are
    :class:`~pydantic.SecretStr`: they never show in a repr or a log line.
    """

    model_config = SettingsConfigDict(env_prefix="SSO_", extra="ignore", populate_by_name=True)

    name: str = "sso"

    # -- tokens --------------------------------------------------------------------------
    #: ``iss`` of every token, and the base of the discovery document's URLs (the gateway's public URL).
    issuer: str = "http://127.0.0.1:8080"
    #: ``aud`` of every token: what gateways and services expect.
    audience: str = "meshkit"
    #: Where clients reach the SSO's public endpoints (through the gateway), for the discovery document.
    public_base: str = "http://127.0.0.1:8080/api/sso"
    #: ``EdDSA`` (Ed25519, default: small, fast, no parameter choices) or ``RS256`` (2048-bit RSA).
    signing_alg: Literal["EdDSA", "RS256"] = "EdDSA"
    access_ttl: float = Field(default=900.0, gt=0)
    refresh_ttl: float = Field(default=30 * 24 * 3600.0, gt=0)
    #: Longest a session lasts from its login, however often it is refreshed (seconds; 0: no limit).
    session_max: float = Field(default=90 * 24 * 3600.0, ge=0)
    #: Signing keys rotate this often (seconds); ``POST /v1/admin/keys/rotate`` rotates at once.
    key_rotation_interval: float = Field(default=7 * 24 * 3600.0, gt=0)
    #: How often the rotation schedule (and keys rotated by another instance) is checked.
    key_check_interval: float = Field(default=60.0, gt=0)
    #: 32 bytes, base64url: seals private signing keys at rest (AES-256-GCM). Unset: a key file in
    #: ``data_dir`` is made (fine on one machine; set this in production and keep it in a secret store).
    key_encryption_key: SecretStr | None = None
    #: How long the ``SSO`` stream keeps token revocations (seconds). A gateway or SSO instance that
    #: starts later replays the stream, so this must cover the longest access-token lifetime;
    #: unset: ``access_ttl`` + 300 s (the gateways' 30 s leeway past ``exp`` and clock drift).
    revocation_retention: float | None = Field(default=None, gt=0)

    # -- passwords (argon2id, OWASP's minimum: m=19 MiB, t=2, p=1) --------------------------
    argon2_time_cost: int = Field(default=2, ge=1)
    argon2_memory_kib: int = Field(default=19 * 1024, ge=8)
    argon2_parallelism: int = Field(default=1, ge=1)
    #: Hashes computed at once (each takes ``argon2_memory_kib`` of memory); 0 = one per CPU.
    max_concurrent_hashes: int = Field(default=0, ge=0)

    # -- login throttling -----------------------------------------------------------------
    account_free_failures: int = 3
    account_lockout_after: int = 10
    ip_free_failures: int = 20
    ip_lockout_after: int = 100
    throttle_base_delay: float = 1.0
    throttle_max_delay: float = 60.0
    lockout_seconds: float = 900.0
    #: Proxies in front of the SSO that append to ``X-Forwarded-For`` (the gateway: 1).
    trusted_proxies: int = Field(default=1, ge=0)
    #: Where those proxies run (CIDRs): a peer elsewhere is its own address, whatever its
    #: ``X-Forwarded-For`` says. None: loopback and the private networks.
    trusted_proxy_networks: list[str] | None = None

    @field_validator("trusted_proxy_networks")
    @classmethod
    def _networks(cls, v: list[str] | None) -> list[str] | None:
        for n in v or ():
            try:
                ipaddress.ip_network(n, strict=False)
            except ValueError as exc:
                raise ValueError(f"SSO_TRUSTED_PROXY_NETWORKS: {n!r} is not a network ({exc}); "
                                 'give CIDRs, e.g. ["10.0.0.0/8"]') from None
        return v

    # -- bootstrap --------------------------------------------------------------------------
    #: The first administrator, made on first start when no user holds ``sso:admin``.
    admin_email: str = "admin@meshkit.local"
    #: Its password; unset: a one-time password is generated and printed once to the console.
    admin_password: SecretStr | None = None
    #: Anyone may sign up (``POST /v1/signup``); off for invitation-only systems.
    allow_signup: bool = True

    @model_validator(mode="after")
    def _retention_covers_token_lifetime(self) -> SsoSettings:
        if self.revocation_retention is not None and self.revocation_retention < self.access_ttl:
            raise ValueError(
                f"SSO_REVOCATION_RETENTION ({self.revocation_retention:g} s) is shorter than SSO_ACCESS_TTL "
                f"({self.access_ttl:g} s): a gateway started later would miss revocations of tokens that are "
                f"still valid; set it to at least {self.access_ttl + RETENTION_MARGIN:g} or leave it unset")
        return self

    @property
    def revocation_max_age(self) -> float:
        """The ``SSO`` stream's retention in seconds (``revocation_retention`` or ``access_ttl`` + margin)."""
        return self.revocation_retention or self.access_ttl + RETENTION_MARGIN
