"""The ``meshkit`` command."""
