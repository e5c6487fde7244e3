"""Backends for frontends: client-specific APIs composed from the deep backend."""
