"""Catalog adapters: product storage in SQL (SQLite / PostgreSQL) and in memory, and the migrations."""

from meshkit.services.catalog.adapters.memory import MemoryProductRepository
from meshkit.services.catalog.adapters.repository import SqlProductRepository
from meshkit.services.catalog.adapters.tables import MIGRATIONS, metadata, products

__all__ = ["MIGRATIONS", "MemoryProductRepository", "SqlProductRepository", "metadata", "products"]
