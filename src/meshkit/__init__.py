"""meshkit: a microservices platform in Python.

Layout (see docs/architecture.md):

- ``meshkit.basis``     the framework every service stands on
- ``meshkit.gateway``   the API gateway (edge)
- ``meshkit.sso``       identity, roles, permissions, tokens
- ``meshkit.bff``       backends for frontends
- ``meshkit.services``  business services, each with its ``_sdk``
- ``meshkit.utility``   utility services (feature flags, locks, objects)
- ``meshkit.egress``    gateways to external providers
- ``meshkit.cli``       the ``meshkit`` command
"""

__version__ = "0.1.0"
