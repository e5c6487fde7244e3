"""The storefront's settings: ``STOREFRONT_*`` variables (and the platform-wide ``MESHKIT_*`` ones)."""

from __future__ import annotations

from pydantic_settings import SettingsConfigDict

from meshkit.basis.settings import ServiceSettings


class StorefrontSettings(ServiceSettings):
    """Settings of the storefront. ``STOREFRONT_DATABASE_URL`` picks its own database
    (default: ``<data dir>/storefront.db``)."""

    model_config = SettingsConfigDict(env_prefix="STOREFRONT_", extra="ignore", populate_by_name=True)

    name: str = "storefront"
