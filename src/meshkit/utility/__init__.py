"""Utility services: feature flags, distributed locks, object storage."""
