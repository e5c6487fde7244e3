"""Relational storage: async SQLAlchemy engines chosen by URL, per-service migrations."""
