"""The runtime's middleware, driven through a Service's ASGI app (no server, no registry):
request ids, traceparent, deadline, identity, error mapping, metrics labels, concurrency
cap, drain gate."""

from __future__ import annotations

import asyncio
import re

import httpx
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.routing import Mount, Route, Router

from meshkit.basis import context
from meshkit.basis.errors import Conflict
from meshkit.basis.service import Service
from meshkit.basis.settings import ServiceSettings
from meshkit.basis.web import identity, json_response

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = "00f067aa0ba902b7"


def make_service(**settings) -> Service:
    state = {"calls": 0}

    async def item(request: Request):
        state["calls"] += 1
        ctx = context.current()
        who = identity(request)
        return json_response({
            "id": request.path_params["id"],
            "request_id": ctx.request_id,
            "trace_id": ctx.trace_id,
            "remaining": ctx.remaining(),
            "subject": who.subject if who else None,
            "roles": sorted(who.roles) if who else None,
        })

    async def conflict(request):
        raise Conflict("version 3 is stale; reload and retry", details={"current": 4})

    async def boom(request):
        raise RuntimeError("db password is hunter2")

    async def teapot(request):
        raise HTTPException(418, "short and stout")

    async def gone(request):
        raise HTTPException(404, "product p-1 is not in the catalog")

    async def slow(request):
        await asyncio.sleep(float(request.query_params.get("s", "0.3")))
        return json_response({"slow": True})

    async def inner(request):
        return json_response({"inner": request.path_params["x"]})

    svc = Service(
        ServiceSettings(name="mw", registry_url="memory://mw", **settings),
        routes=[
            Route("/items/{id}", item, methods=["GET"]),
            Route("/conflict", conflict),
            Route("/boom", boom),
            Route("/teapot", teapot),
            Route("/gone", gone),
            Route("/slow", slow),
            Mount("/v1", routes=[Route("/things/{x}", inner)]),
        ],
    )
    svc.state["counter"] = state
    return svc


def client(svc: Service) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=svc), base_url="http://svc")


async def test_request_id_made_carried_or_replaced():
    async with client(make_service()) as c:
        made = await c.get("/items/1")
        carried = await c.get("/items/1", headers={"x-request-id": "req-abc_123"})
        bad = await c.get("/items/1", headers={"x-request-id": "no spaces; or semicolons"})
    assert re.fullmatch(r"[0-9a-f]{24}", made.headers["x-request-id"])
    assert made.json()["request_id"] == made.headers["x-request-id"]
    assert carried.headers["x-request-id"] == "req-abc_123" == carried.json()["request_id"]
    assert bad.headers["x-request-id"] != "no spaces; or semicolons"
    assert re.fullmatch(r"[0-9a-f]{24}", bad.headers["x-request-id"])


async def test_traceparent_carried_and_malformed_replaced():
    async with client(make_service()) as c:
        ok = await c.get("/items/1", headers={"traceparent": f"00-{TRACE}-{PARENT}-01"})
        broken = await c.get("/items/1", headers={"traceparent": f"00-{TRACE[:-2]}-{PARENT}-01"})
    version, trace, span, flags = ok.headers["traceparent"].split("-")
    assert (version, trace, flags) == ("00", TRACE, "01")
    assert span != PARENT and len(span) == 16  # our span, child of the caller's
    assert ok.json()["trace_id"] == TRACE
    new_trace = broken.headers["traceparent"].split("-")[1]
    assert new_trace != TRACE and len(new_trace) == 32
    assert broken.json()["trace_id"] == new_trace


async def test_spent_deadline_gets_504_without_running_the_handler():
    svc = make_service()
    async with client(svc) as c:
        spent = await c.get("/items/1", headers={"x-deadline-ms": "0", "x-request-id": "late-1"})
        fine = await c.get("/items/1", headers={"x-deadline-ms": "5000"})
    assert spent.status_code == 504
    assert spent.json()["error"]["reason"] == "deadline_exceeded"
    assert spent.headers["x-request-id"] == "late-1"  # error answers are correlated too
    assert svc.state["counter"]["calls"] == 1  # only the second request ran
    assert fine.status_code == 200 and 0 < fine.json()["remaining"] <= 5.0


async def test_identity_headers_reach_the_handler():
    headers = {"x-meshkit-subject": "u-42", "x-meshkit-roles": "admin,buyer", "x-meshkit-client": "user"}
    async with client(make_service()) as c:
        who = (await c.get("/items/1", headers=headers)).json()
        anon = (await c.get("/items/1")).json()
    assert who["subject"] == "u-42" and who["roles"] == ["admin", "buyer"]
    assert anon["subject"] is None


async def test_errors_map_to_the_json_shape():
    async with client(make_service()) as c:
        conflict = await c.get("/conflict")
        boom = await c.get("/boom")
        missing = await c.get("/no/such/thing")
        wrong_method = await c.delete("/items/1")
        teapot = await c.get("/teapot")
        gone = await c.get("/gone")
    assert conflict.status_code == 409
    assert conflict.json() == {"error": {"reason": "conflict", "message": "version 3 is stale; reload and retry",
                                         "details": {"current": 4}}}
    assert boom.status_code == 500
    assert boom.json() == {"error": {"reason": "internal", "message": "internal error"}}
    assert "hunter2" not in boom.text and "Traceback" not in boom.text
    assert boom.headers["content-type"] == "application/json" and "x-request-id" in boom.headers
    assert missing.status_code == 404 and missing.json()["error"]["reason"] == "no_route"
    assert wrong_method.status_code == 405
    assert wrong_method.json()["error"]["reason"] == "method_not_allowed"
    assert "GET" in wrong_method.headers["allow"]
    assert teapot.status_code == 418 and teapot.json()["error"]["message"] == "short and stout"
    assert gone.status_code == 404
    assert gone.json()["error"] == {"reason": "not_found", "message": "product p-1 is not in the catalog"}


async def test_metrics_use_route_templates():
    svc = make_service()
    async with client(svc) as c:
        for i in range(5):
            await c.get(f"/items/{i}")
        await c.get("/v1/things/a")
        await c.get("/v1/things/b")
        await c.get("/boom")
        await c.get(f"/random/{'x' * 10}")
        text = (await c.get("/metrics")).text
    assert 'http_requests_total{method="GET",route="/items/{id}",status="200"} 5.0' in text
    assert 'http_requests_total{method="GET",route="/v1/things/{x}",status="200"} 2.0' in text
    assert 'http_requests_total{method="GET",route="/boom",status="500"} 1.0' in text
    assert 'http_requests_total{method="GET",route="<unmatched>",status="404"} 1.0' in text
    assert 'http_request_duration_seconds_count{route="/items/{id}",status="200"} 5.0' in text
    assert "/items/3" not in text and "xxxxxxxxxx" not in text  # no raw paths: bounded cardinality
    # The /metrics request itself is still in flight while it renders.
    assert "http_requests_in_flight 1.0" in text


async def test_service_adds_its_own_metrics():
    svc = make_service()
    orders = svc.metrics.counter("orders_placed_total", "Orders placed.", ["kind"])
    orders.labels("web").inc(3)
    async with client(svc) as c:
        text = (await c.get("/metrics")).text
    assert 'orders_placed_total{kind="web"} 3.0' in text


async def test_switches_turn_metrics_off():
    svc = make_service(request_metrics=False, access_log=False)
    async with client(svc) as c:
        await c.get("/items/1")
        text = (await c.get("/metrics")).text
    assert 'route="/items/{id}"' not in text


async def test_concurrency_cap_sheds_load():
    svc = make_service(max_concurrency=1)
    async with client(svc) as c:
        slow = asyncio.create_task(c.get("/slow", params={"s": "0.3"}))
        await asyncio.sleep(0.05)
        shed = await c.get("/items/1")
        assert (await slow).status_code == 200
        after = await c.get("/items/1")
    assert shed.status_code == 503
    assert shed.json()["error"]["reason"] == "overloaded" and shed.headers["retry-after"] == "1"
    assert after.status_code == 200


async def test_drain_gate_refuses_new_work_and_waits_for_in_flight():
    svc = make_service()
    async with client(svc) as c:
        slow = asyncio.create_task(c.get("/slow", params={"s": "0.2"}))
        await asyncio.sleep(0.05)
        assert svc.gate.in_flight == 1
        svc.gate.close()
        refused = await c.get("/items/1")
        assert await svc.gate.wait_idle(2.0)
        assert (await slow).status_code == 200
    assert refused.status_code == 503
    assert refused.json()["error"]["reason"] == "shutting_down"
    assert refused.headers["connection"] == "close"
    assert svc.state["counter"]["calls"] == 0


async def test_route_template_of_plain_router_and_mount():
    from meshkit.basis.middleware import route_template

    router = Router(routes=[Route("/a/{b}", json_response), Mount("/static", app=json_response)])
    scope = {"type": "http", "path": "/a/1", "root_path": "", "method": "GET"}
    _match, child = router.routes[0].matches(scope)
    scope.update(child, route=router.routes[0])
    assert route_template(scope) == "/a/{b}"
    assert route_template({"root_path": ""}) == "<unmatched>"
    assert route_template({"route": router.routes[1], "root_path": "/static"}) == "/static/*"
