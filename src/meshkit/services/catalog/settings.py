"""The catalog's settings: ``CATALOG_*`` variables (and the platform-wide ``MESHKIT_*`` ones)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from meshkit.basis.settings import ServiceSettings


class CatalogSettings(ServiceSettings):
    """Settings of the catalog service.

    ``CATALOG_DATABASE_URL`` picks the database (default: a SQLite file
    ``<data dir>/catalog.db``; ``postgresql+asyncpg://...`` in production).
    """

    model_config = SettingsConfigDict(env_prefix="CATALOG_", extra="ignore", populate_by_name=True)

    name: str = "catalog"
    #: Largest ``limit`` a listing accepts (at most the contract's 200).
    page_size_max: int = Field(default=200, ge=1, le=200)
