"""SIGTERM to a real service process: it deregisters first, finishes the request that
was in flight, refuses new ones, runs its shutdown hooks and exits 0 (both servers)."""

from __future__ import annotations

import asyncio
import signal
import sys
import uuid

import httpx
import orjson
import pytest

from meshkit.basis.registry import open_registry
from meshkit.basis.registry.view import RegistryView

# The smallest real service: one slow route, run() as a service's main would.
CHILD = r"""
import asyncio, sys
from starlette.routing import Route
from meshkit.basis.service import Service, run
from meshkit.basis.settings import ServiceSettings
from meshkit.basis.web import json_response


async def slow(request):
    await asyncio.sleep(float(request.query_params.get("s", "0")))
    return json_response({"done": True})

async def goodbye(service):
    print("shutdown hook ran", flush=True)

name, registry_url, server = sys.argv[1:4]
svc = Service(ServiceSettings(name=name, registry_url=registry_url, http_server=server, drain_timeout=5.0),
              routes=[Route("/slow", slow)])
svc.on_shutdown(goodbye)
run(svc)
"""


@pytest.mark.parametrize("server", ["granian", "uvicorn"])
@pytest.mark.timing
async def test_sigterm_deregisters_drains_refuses_and_exits_0(server, nats_server, tmp_path):
    registry_url = f"{nats_server}?bucket=rt_{uuid.uuid4().hex[:10]}"
    name = f"rt-term-{server}"
    script = tmp_path / "service_child.py"
    script.write_text(CHILD)
    registry = await open_registry(registry_url)
    view = RegistryView(registry)
    await view.start()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(script), name, registry_url, server,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    loop = asyncio.get_running_loop()
    events: dict[str, float] = {}
    try:
        [instance] = await view.wait_for(name, 1, timeout=20.0)
        view.subscribe(lambda svc: svc == name and not view.instances(name) and events.setdefault("gone", loop.time()))
        async with httpx.AsyncClient(base_url=instance.url, timeout=10.0) as c:
            slow = asyncio.create_task(c.get("/slow", params={"s": "1.5"}))
            await asyncio.sleep(0.3)  # the slow request is being handled
            proc.send_signal(signal.SIGTERM)
            events["signal"] = loop.time()
            while "gone" not in events:
                assert loop.time() - events["signal"] < 2.0, "not deregistered within 2s of SIGTERM"
                await asyncio.sleep(0.01)
            # A new request after the stop began (new connection; the listener stays open
            # during the drain so the refusal is an answer, not a connection error).
            async with httpx.AsyncClient(base_url=instance.url, timeout=5.0) as fresh:
                refused = await fresh.get("/slow")
            answered = await slow
            events["answered"] = loop.time()
        rc = await asyncio.wait_for(proc.wait(), timeout=10.0)
        events["exited"] = loop.time()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        await view.close()
        await registry.close()
    stdout = (await proc.stdout.read()).decode()
    stderr = (await proc.stderr.read()).decode()
    assert rc == 0, stderr[-3000:]
    # Deregistered first: callers stopped seeing it while the slow request was still running.
    assert events["gone"] < events["answered"]
    assert answered.status_code == 200 and answered.json() == {"done": True}
    assert refused.status_code == 503
    assert refused.json()["error"]["reason"] == "shutting_down"
    assert refused.headers["connection"] == "close"
    assert events["exited"] - events["signal"] < 5.0  # within the drain timeout
    assert "shutdown hook ran" in stdout
    # The child's log: JSON lines, deregistration before the drain.
    lines = [orjson.loads(line) for line in stderr.splitlines() if line.startswith("{")]
    assert lines and all(line["service"] == name for line in lines)
    messages = [line["message"] for line in lines]
    dereg = next(i for i, m in enumerate(messages) if m.startswith("deregistered"))
    drain = next(i for i, m in enumerate(messages) if m.startswith("draining"))
    assert dereg < drain < messages.index(f"{name} stopped")
    access = [line for line in lines if line["logger"] == "meshkit.access" and line["path"] == "/slow"]
    assert {a["status"] for a in access} >= {200}
