"""The gateway's seal on the identity it passes on, and the services believing only sealed identities."""

from __future__ import annotations

import time

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from meshkit.basis.errors import ConfigError
from meshkit.basis.metrics import ServiceMetrics
from meshkit.basis.middleware import StackOptions, build_stack
from meshkit.basis.seal import SEAL, parse_key, seal, verify
from meshkit.basis.web import identity

KEY = bytes(range(32))
WHO = {"x-meshkit-subject": "usr_1", "x-meshkit-roles": "editor", "x-meshkit-permissions": "catalog:write",
       "x-meshkit-client": "user", "x-meshkit-token-id": "jti-1"}


def test_a_seal_holds_for_its_identity_its_key_and_its_time():
    sealed = {**WHO, SEAL: seal(WHO, KEY, 2000)}
    assert verify(sealed, KEY, 1999.0)
    assert not verify(sealed, KEY, 2000.0)  # expired
    assert not verify(sealed, bytes(32), 1999.0)  # another key
    for name, value in [("x-meshkit-permissions", "catalog:write,sso:admin"), ("x-meshkit-subject", "usr_2"),
                        ("x-meshkit-tenant", "other")]:
        assert not verify({**sealed, name: value}, KEY, 1999.0), name  # any identity header changed
    later = seal(WHO, KEY, 3000).split(".")[2]
    assert not verify({**WHO, SEAL: f"v1.3500.{later}"}, KEY, 1999.0)  # its time changed
    for bad in ("", "v2.3000.ab", "v1.x.ab", "v1.3000", "junk"):
        assert not verify({**WHO, SEAL: bad}, KEY, 1999.0), bad


def test_the_key_is_hex_of_32_bytes_or_more():
    assert parse_key(None) is None and parse_key("") is None
    assert parse_key(KEY.hex()) == KEY
    for bad in ("zz" * 32, "ab" * 16):
        with pytest.raises(ConfigError, match="MESHKIT_IDENTITY_KEY"):
            parse_key(bad)


def service(key: bytes | None):
    async def who(request: Request):
        found = identity(request)
        return JSONResponse({"subject": found.subject if found else None,
                             "permissions": sorted(found.permissions) if found else []})

    app, _ = build_stack(Starlette(routes=[Route("/who", who)]), metrics=ServiceMetrics("t"),
                         options=StackOptions(access_log=False, request_metrics=False, identity_key=key))
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://svc")


async def test_with_a_key_a_service_believes_only_sealed_identities():
    # Before: any caller reaching a service directly chose its identity with x-meshkit-* headers.
    async with service(KEY) as c:
        assert (await c.get("/who", headers=WHO)).json() == {"subject": None, "permissions": []}
        sealed = {**WHO, SEAL: seal(WHO, KEY, int(time.time()) + 60)}
        assert (await c.get("/who", headers=sealed)).json() == {"subject": "usr_1", "permissions": ["catalog:write"]}
        forged = {**sealed, "x-meshkit-permissions": "catalog:write,sso:admin"}
        assert (await c.get("/who", headers=forged)).json()["subject"] is None
    async with service(None) as c:  # no key: believed as before (only the gateway reaches the service)
        assert (await c.get("/who", headers=WHO)).json()["subject"] == "usr_1"
