"""The gateway's ``/readyz`` follows its registry: NATS stopped → 503 naming the registry; back → 200.

The test runs its own ``nats-server`` (not the session one) so that it can stop
and restart it on the same port and data directory, as an operator would.
"""

from __future__ import annotations

import asyncio
import time
import uuid

import orjson

from meshkit.basis.http import HttpTransport
from meshkit.basis.instance import Instance
from meshkit.basis.natsd import EmbeddedNats
from meshkit.basis.registry import open_registry
from meshkit.basis.registry.registration import Registration
from meshkit.gateway.app import Gateway
from meshkit.gateway.messages import Response
from meshkit.gateway.server import serve
from meshkit.gateway.settings import GatewaySettings

ROUTES = """
routes:
  - name: echo
    match: {prefix: /echo/}
    upstream: {service: echo}
"""


async def _echo(req):
    return Response(200, [(b"content-type", b"application/json")], orjson.dumps({"target": req.target}))


async def _until(predicate, timeout: float, what: str):
    """Poll ``predicate`` (async, returns a value or None) until it answers, or fail naming ``what``."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = await predicate()
        if last is not None:
            return last
        await asyncio.sleep(0.1)
    raise AssertionError(f"{what} within {timeout}s")


async def test_readyz_fails_naming_the_registry_while_nats_is_down_and_recovers(tmp_path):
    nats = await EmbeddedNats(port=0, data_dir=tmp_path / "nats").start()
    url = f"{nats.url}?bucket=gw_ready_{uuid.uuid4().hex[:8]}"
    registry = await open_registry(url)
    upstream = await serve(_echo, "127.0.0.1", 0)
    registration = Registration(registry, Instance("echo", "e1", "127.0.0.1", upstream.port), ttl=3.0, interval=0.5)
    await registration.start()
    routes = tmp_path / "routes.yaml"
    routes.write_text(ROUTES)
    settings = GatewaySettings(host="127.0.0.1", port=0, admin_port=0, routes_file=routes, registry_url=url,
                               access_log=False, reload_interval=0, instance_id="gw-ready-1",
                               heartbeat_interval=0.3)
    gw = await Gateway(settings).start()  # registers itself, as in production
    http = HttpTransport()

    async def readyz(port: int | None = None):
        return await http.request("127.0.0.1", port or gw.port, "GET", "/readyz", timeout=5)

    try:
        await gw.view.wait_for("echo", 1)
        r = await readyz()
        assert r.status == 200, r.body
        body = r.json()
        assert body["status"] == "ready" and body["checks"]["registry"]["ok"] is True
        assert body["checks"]["routes"]["ok"] is True

        await nats.stop()
        t0 = time.monotonic()
        r = await readyz()
        took = time.monotonic() - t0
        assert r.status == 503, r.body
        err = r.json()["error"]
        assert err["reason"] == "not_ready" and err["details"]["failed"] == ["registry"]
        assert "registry" in err["message"]
        assert err["details"]["checks"]["registry"]["ok"] is False and err["details"]["checks"]["registry"]["error"]
        assert took < 3.0  # a probe must not hang on a dead NATS
        r = await readyz(gw.admin_port)  # the admin port answers the same
        assert r.status == 503 and r.json()["error"]["details"]["failed"] == ["registry"]
        # Routing goes on with the instances the view last saw.
        r = await http.request("127.0.0.1", gw.port, "GET", "/echo/x", timeout=5)
        assert r.status == 200 and r.json()["target"] == "/echo/x"

        nats = await EmbeddedNats(port=nats.port, data_dir=tmp_path / "nats").start()  # same port and store

        async def ready_again():
            r = await readyz()
            return r if r.status == 200 else None

        r = await _until(ready_again, 15.0, "/readyz did not answer 200 after NATS came back")
        assert r.json()["checks"]["registry"]["ok"] is True
    finally:
        await http.close()
        await gw.stop(0.5)
        await registration.stop()
        await upstream.stop(0.5)
        await registry.close()
        await nats.stop()


async def test_readyz_is_503_while_draining(nats_server, tmp_path):
    routes = tmp_path / "routes.yaml"
    routes.write_text(ROUTES)
    settings = GatewaySettings(host="127.0.0.1", port=0, admin_port=0, routes_file=routes,
                               registry_url=f"{nats_server}?bucket=gw_ready_{uuid.uuid4().hex[:8]}",
                               access_log=False, reload_interval=0)
    gw = await Gateway(settings, register=False).start()
    http = HttpTransport()
    try:
        r = await http.request("127.0.0.1", gw.admin_port, "GET", "/readyz", timeout=5)
        assert r.status == 200 and r.json()["checks"]["registry"]["ok"] is True
        gw.draining = True  # what stop() sets first, before the listeners close
        r = await http.request("127.0.0.1", gw.admin_port, "GET", "/readyz", timeout=5)
        assert r.status == 503 and r.json()["error"]["reason"] == "shutting_down"
    finally:
        await http.close()
        await gw.stop(0.5)
