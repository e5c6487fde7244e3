"""The SSO's AsyncAPI document (the events it publishes and follows), committed as ``sso_sdk/asyncapi.json``.

A test fails when the committed file drifts. Regenerate after changing an event::

    python -m meshkit.sso.asyncapi --write
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from meshkit.basis import sdkdoc
from meshkit.basis.bus import asyncapi
from meshkit.sso.adapters.bus import BusPublisher
from meshkit.sso_sdk.events import DEFAULT_RETENTION, VERSION


def document() -> dict[str, Any]:
    """The document as a dict: what the SSO's revocation bus declares it publishes and follows."""
    declared = BusPublisher("nats://127.0.0.1:4222", source="sso", retention=DEFAULT_RETENTION).bus  # not connected
    return declared.asyncapi(
        VERSION,
        description="Token revocations on stream SSO, kept as long as an access token can live "
                    "(SSO_REVOCATION_RETENTION, default SSO_ACCESS_TTL + 300 s). The event id is the token's jti: "
                    "a retried publish is stored once. Every SSO instance and every gateway follows the stream "
                    "from its start with a consumer of its own (meshkit.basis.bus.follow), so each one, "
                    "even one started later, sees every revocation.",
    )


def render() -> bytes:
    """The committed bytes."""
    return asyncapi.render(document())


def sdk_path() -> Path:
    """``sso_sdk/asyncapi.json``."""
    return sdkdoc.sdk_file("meshkit.sso_sdk", "asyncapi.json")


def main(argv: list[str] | None = None) -> int:
    """Print the document, or with ``--write`` store it in the SDK package."""
    return sdkdoc.cli(argv, render, sdk_path())


if __name__ == "__main__":
    raise SystemExit(main())
