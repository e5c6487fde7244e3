"""Runtime limits: a deadline that runs out mid-request, and the request body size limit."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest
from starlette.requests import Request
from starlette.routing import Route

from meshkit.basis.service import Service
from meshkit.basis.settings import ServiceSettings
from meshkit.basis.web import json_response


def make_service(**settings) -> Service:
    seen = {"finished": 0, "bytes": 0}

    async def slow(request: Request):
        await asyncio.sleep(float(request.query_params.get("s", "1")))
        seen["finished"] += 1
        return json_response({"slow": True})

    async def upload(request: Request):
        body = await request.body()
        seen["bytes"] = len(body)
        return json_response({"bytes": len(body)})

    svc = Service(
        ServiceSettings(name="limits", registry_url="memory://limits", **settings),
        routes=[Route("/slow", slow), Route("/upload", upload, methods=["POST"])],
    )
    svc.state["seen"] = seen
    return svc


def client(svc: Service) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=svc), base_url="http://svc")


@pytest.mark.timing
async def test_deadline_running_out_mid_request_cancels_it_with_504():
    svc = make_service()
    async with client(svc) as c:
        t0 = time.monotonic()
        late = await c.get("/slow?s=2", headers={"x-deadline-ms": "150"})
        took = time.monotonic() - t0
        ok = await c.get("/slow?s=0.01", headers={"x-deadline-ms": "2000"})
    assert late.status_code == 504
    assert late.json()["error"]["reason"] == "deadline_exceeded"
    assert took < 1.0, "the handler was not cancelled at the deadline"
    assert ok.status_code == 200
    assert svc.state["seen"]["finished"] == 1


async def test_handlers_own_timeout_is_not_taken_for_the_deadline():
    async def own_timeout(request):
        async with asyncio.timeout(0.01):
            await asyncio.sleep(1)

    svc = Service(ServiceSettings(name="own", registry_url="memory://own"), routes=[Route("/t", own_timeout)])
    async with client(svc) as c:
        r = await c.get("/t", headers={"x-deadline-ms": "5000"})
    assert r.status_code == 500  # the handler's bug, not the caller's budget


async def test_declared_body_over_the_limit_is_refused_before_it_is_read():
    svc = make_service(max_body_bytes=1000)
    async with client(svc) as c:
        big = await c.post("/upload", content=b"x" * 1001)
        fine = await c.post("/upload", content=b"x" * 1000)
    assert big.status_code == 413
    err = big.json()["error"]
    assert err["reason"] == "payload_too_large" and err["details"] == {"max_bytes": 1000}
    assert fine.status_code == 200 and fine.json() == {"bytes": 1000}


async def test_chunked_body_over_the_limit_is_cut_off_while_read():
    svc = make_service(max_body_bytes=1000)

    async def chunks():
        for _ in range(5):
            yield b"y" * 400

    async with client(svc) as c:
        r = await c.post("/upload", content=chunks())
    assert r.status_code == 413
    assert svc.state["seen"]["bytes"] == 0  # the handler never got the body


async def test_limit_zero_means_no_limit():
    svc = make_service(max_body_bytes=0)
    async with client(svc) as c:
        r = await c.post("/upload", content=b"z" * 50_000)
    assert r.json() == {"bytes": 50_000}
