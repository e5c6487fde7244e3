"""The SSO under `meshkit up` (the default system), used through the gateway as a client would.

sign up → log in → 403 without the permission → the bootstrap administrator
grants a role → 201 → the product shows up in the storefront's copy (fed by the
catalog's events, read through the gateway) within seconds → refresh (rotation) →
logout → 401; a token revoked at the SSO is refused by the gateway within 1 s;
client-sent identity headers never reach a service. Then the README's curl walk-through runs as written (only the
gateway address moved) and must show the same story. Fixed ports move to free ones; the gateway is pointed at the
moved SSO port through the environment (which wins over the system file).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import sys
import time
import uuid
from pathlib import Path

import httpx
import pytest

from meshkit.basis.natsd import free_port

pytestmark = [pytest.mark.system, pytest.mark.timeout(120)]

READY = re.compile(r"ready in [\d.]+s")
ADMIN_PASSWORD = "change-me-admin-passphrase"  # the one the README's walk-through uses
PASSWORD = "tram-violet-ankle-93"
README = (Path(__file__).resolve().parents[2] / "README.md").read_text()


async def _read(proc: asyncio.subprocess.Process, lines: list[str]) -> None:
    assert proc.stdout is not None
    async for raw in proc.stdout:
        lines.append(raw.decode(errors="replace").rstrip("\n"))


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


async def test_sso_flow_under_meshkit_up(tmp_path):
    nats_port, gw_port, sso_port = free_port(), free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MESHKIT_", "SSO_", "GATEWAY_"))}
    env.update(GATEWAY_PORT=str(gw_port), GATEWAY_ADMIN_PORT=str(free_port()), SSO_PORT=str(sso_port),
               GATEWAY_JWKS_URL=f"http://127.0.0.1:{sso_port}/.well-known/jwks.json",
               SSO_ADMIN_PASSWORD=ADMIN_PASSWORD, SSO_ARGON2_TIME_COST="1", SSO_ARGON2_MEMORY_KIB="1024")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "meshkit.cli.main", "up", "--nats-port", str(nats_port), "--no-color",
        cwd=tmp_path, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    lines: list[str] = []
    reader = asyncio.create_task(_read(proc, lines))
    try:
        deadline = time.monotonic() + 40
        while not any(READY.search(line) for line in lines):
            assert proc.returncode is None and time.monotonic() < deadline, "\n".join(lines[-60:])
            await asyncio.sleep(0.1)
        ready = next(line for line in lines if READY.search(line))
        assert "storefront-1 http://127.0.0.1:" in ready, ready  # the storefront is part of the default system
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{gw_port}", timeout=10) as c:
            await _flow(c, sso_port)
        await _readme_walkthrough(gw_port, tmp_path)
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(proc.wait(), 15)
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        reader.cancel()
    assert proc.returncode == 0, "\n".join(lines[-60:])


async def _flow(c: httpx.AsyncClient, sso_port: int) -> None:
    address = f"up-{uuid.uuid4().hex[:8]}@example.com"
    assert (await c.post("/api/sso/signup", json={"email": address, "password": PASSWORD})).status_code == 202
    r = await c.post("/api/sso/login", json={"email": address, "password": PASSWORD})
    assert r.status_code == 200, r.text
    pair = r.json()
    me = (await c.get("/api/sso/userinfo", headers=bearer(pair["access_token"]))).json()["sub"]
    product = {"name": "Mug", "sku": f"UP-{uuid.uuid4().hex[:6]}", "price": {"amount": "3.00", "currency": "EUR"}}
    assert (await c.post("/api/catalog/products", json=product,
                         headers=bearer(pair["access_token"]))).status_code == 403

    r = await c.post("/api/sso/login", json={"email": "admin@meshkit.local", "password": ADMIN_PASSWORD})
    assert r.status_code == 200, r.text
    admin = bearer(r.json()["access_token"])
    await c.post("/api/sso/admin/permissions", json={"name": "catalog:write"}, headers=admin)
    await c.post("/api/sso/admin/roles", json={"name": "catalog-editor"}, headers=admin)
    await c.post("/api/sso/admin/roles/catalog-editor/grants", json={"permission": "catalog:write"}, headers=admin)
    assert (await c.put(f"/api/sso/admin/subjects/{me}/roles/catalog-editor", headers=admin)).status_code == 200

    pair = (await c.post("/api/sso/refresh", json={"refresh_token": pair["refresh_token"]})).json()
    r = await c.post("/api/catalog/products", json=product, headers=bearer(pair["access_token"]))
    assert r.status_code == 201, r.text
    await _appears_in_storefront(c, r.json())
    pair = (await c.post("/api/sso/refresh", json={"refresh_token": pair["refresh_token"]})).json()
    assert (await c.post("/api/sso/logout", json={"refresh_token": pair["refresh_token"]},
                         headers=bearer(pair["access_token"]))).status_code == 204
    await asyncio.sleep(0.3)
    assert (await c.get("/api/sso/userinfo", headers=bearer(pair["access_token"]))).status_code == 401

    # Revoked at the SSO directly: the gateway, which has the token cached, refuses it within 1 s.
    fresh = (await c.post("/api/sso/login", json={"email": address, "password": PASSWORD})).json()
    headers = bearer(fresh["access_token"])
    assert (await c.get("/api/sso/userinfo", headers=headers)).status_code == 200
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{sso_port}") as direct:
        assert (await direct.post("/v1/logout", headers=headers)).status_code == 204
    t0 = time.monotonic()
    while (await c.get("/api/sso/userinfo", headers=headers)).status_code != 401:
        assert time.monotonic() - t0 < 1.0, "revoked token still accepted after 1 s"
        await asyncio.sleep(0.02)

    # Identity headers sent by a client are stripped: the SSO sees an anonymous caller.
    spoof = {"x-meshkit-subject": me, "x-meshkit-permissions": "sso:admin"}
    r = await c.post("/api/sso/logout", headers=spoof)
    assert r.status_code == 401 and r.json()["error"]["reason"] == "credential_required"
    jwks = (await c.get("/.well-known/jwks.json")).json()
    assert len(jwks["keys"]) >= 2


async def _appears_in_storefront(c: httpx.AsyncClient, created: dict) -> None:
    """CQRS under `meshkit up`: the storefront's own copy (fed by the catalog's events, never by a call to
    the catalog) has the product created through the gateway within a few seconds, read through the gateway."""
    t0 = time.monotonic()
    while True:
        r = await c.get("/api/storefront/products", params={"limit": "200"})
        assert r.status_code == 200, r.text
        if any(item["id"] == created["id"] for item in r.json()["items"]):
            break
        assert time.monotonic() - t0 < 5.0, f"not in the storefront's copy after 5 s: {r.text}"
        await asyncio.sleep(0.05)
    r = await c.get(f"/api/storefront/products/{created['id']}")
    assert r.status_code == 200, r.text
    copy = r.json()
    assert {k: copy[k] for k in ("id", "name", "sku", "price", "version")} == \
        {k: created[k] for k in ("id", "name", "sku", "price", "version")}
    missing = await c.get("/api/storefront/products/no-such-product")
    assert missing.status_code == 404 and missing.json()["error"]["reason"] == "product_not_found"


async def _readme_walkthrough(gw_port: int, workdir) -> None:
    """Run the README's identity walk-through with bash and curl, as a reader would paste it."""
    section = README.split("## Identity: sign up, log in, call a protected route", 1)[1]
    script = re.findall(r"```sh\n(.*?)```", section, re.S)[1]
    assert "GW=http://127.0.0.1:8080" in script
    script = script.replace("GW=http://127.0.0.1:8080", f"GW=http://127.0.0.1:{gw_port}")
    proc = await asyncio.create_subprocess_exec(
        "bash", "-euo", "pipefail", "-c", script, cwd=workdir,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    text = out.decode()
    assert proc.returncode == 0, text
    assert '"reason":"forbidden"' in text and "catalog:write" in text, text   # 403 before the grant
    assert '"sku":"MUG-1"' in text, text                                         # 201 after refresh
    # the storefront's copy has it (by id, then in its list), made from the catalog's event
    assert re.search(r'\{"id":"[^"]+","name":"Mug","description":"","sku":"MUG-1",'
                     r'"price":\{"amount":"9.50","currency":"EUR"\},"version":1\}', text), text
    assert re.search(r'\{"items":\[[^\]]*"sku":"MUG-1"', text), text
    assert "204\n401\n" in text, text                                              # logout, then refused
    assert '"jwks_uri"' in text and '"keys"' in text, text                       # discovery and keys
