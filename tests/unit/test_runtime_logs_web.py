"""JSON log lines (fields, request/trace correlation, tracebacks, batching), the web
helpers (parse_body, parse_query, json_response, identity) and the readiness checks."""

from __future__ import annotations

import asyncio
import datetime as dt
import io
import logging
import uuid

import httpx
import orjson
import pytest
from pydantic import BaseModel, Field
from starlette.routing import Route

from meshkit.basis.errors import BadRequest, Unauthorized, Unprocessable
from meshkit.basis.health import HealthChecks
from meshkit.basis.logs import BufferedLineHandler, JsonFormatter, configure_logging
from meshkit.basis.service import Service
from meshkit.basis.settings import ServiceSettings
from meshkit.basis.web import json_response, parse_body, parse_query, require_identity

log = logging.getLogger("tests.runtime")


class NewItem(BaseModel):
    name: str = Field(min_length=1)
    price: int = Field(ge=0)


class Query(BaseModel):
    tag: list[str] = []
    limit: int = 10
    q: str | None = None


async def create(request):
    item = await parse_body(request, NewItem)
    log.info("creating %s", item.name, extra={"price": item.price})
    return json_response(item, status=201)


async def search(request):
    return json_response(parse_query(request, Query))


async def crash(request):
    raise KeyError("secret-key")


async def me(request):
    return json_response({"subject": require_identity(request).subject})


def service(**kw) -> Service:
    routes = [Route("/items", create, methods=["POST"]), Route("/search", search),
              Route("/crash", crash), Route("/me", me)]
    return Service(ServiceSettings(name="logsvc", instance_id="logsvc-1", registry_url="memory://l", **kw),
                   routes=routes)


def client(svc: Service) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=svc), base_url="http://svc")


@pytest.fixture
def log_stream():
    stream = io.StringIO()
    handler = configure_logging("info", service="logsvc", instance="logsvc-1", stream=stream, flush_interval=60)
    yield stream, handler
    handler.close()
    logging.getLogger().removeHandler(handler)


def lines(stream: io.StringIO, handler: logging.Handler) -> list[dict]:
    handler.flush()
    return [orjson.loads(line) for line in stream.getvalue().splitlines()]


async def test_log_lines_are_json_with_request_and_trace_ids(log_stream):
    stream, handler = log_stream
    trace = uuid.uuid4().hex
    async with client(service()) as c:
        r = await c.post("/items", json={"name": "pen", "price": 3},
                         headers={"x-request-id": "rq-1", "traceparent": f"00-{trace}-{'1' * 16}-01"})
    assert r.status_code == 201 and r.json() == {"name": "pen", "price": 3}
    out = lines(stream, handler)
    app_line = next(x for x in out if x["logger"] == "tests.runtime")
    access = next(x for x in out if x["logger"] == "meshkit.access")
    for line in (app_line, access):
        assert line["request_id"] == "rq-1" and line["trace_id"] == trace
        assert line["service"] == "logsvc" and line["instance"] == "logsvc-1"
        dt.datetime.strptime(line["time"], "%Y-%m-%dT%H:%M:%S.%fZ")
    assert app_line["message"] == "creating pen" and app_line["price"] == 3 and app_line["level"] == "info"
    assert access["method"] == "POST" and access["route"] == "/items" and access["path"] == "/items"
    assert access["status"] == 201 and access["duration_ms"] >= 0


async def test_unhandled_exception_is_logged_with_traceback_and_ids(log_stream):
    stream, handler = log_stream
    async with client(service()) as c:
        r = await c.get("/crash", headers={"x-request-id": "rq-crash"})
    assert r.status_code == 500 and "secret-key" not in r.text
    out = lines(stream, handler)
    err = next(x for x in out if x["logger"] == "meshkit.errors")
    assert err["level"] == "error" and err["request_id"] == "rq-crash"
    assert err["exc_type"] == "KeyError" and "secret-key" in err["traceback"]
    access = next(x for x in out if x["logger"] == "meshkit.access")
    assert access["status"] == 500 and access["request_id"] == "rq-crash"


def test_formatter_outside_a_request_and_odd_extras():
    rec = logging.LogRecord("x", logging.WARNING, __file__, 1, "path %s", ("p",), None)
    rec.where = uuid.UUID(int=1)
    line = orjson.loads(JsonFormatter(service="s").format(rec))
    assert line["message"] == "path p" and line["level"] == "warning" and "request_id" not in line
    assert line["where"] == str(uuid.UUID(int=1))


def test_buffered_handler_batches_and_flushes_errors_at_once():
    stream = io.StringIO()
    handler = BufferedLineHandler(stream, interval=60)
    handler.setFormatter(JsonFormatter())
    lg = logging.getLogger("tests.runtime.buffer")
    lg.addHandler(handler)
    lg.propagate = False
    try:
        lg.warning("w1")  # warnings go out at once
        assert orjson.loads(stream.getvalue())["message"] == "w1"
        lg.setLevel(logging.INFO)
        lg.info("i1")
        assert "i1" not in stream.getvalue()  # info waits for the batch
        handler.flush()
        assert orjson.loads(stream.getvalue().splitlines()[-1])["message"] == "i1"
    finally:
        lg.removeHandler(handler)
        handler.close()


def test_unknown_log_level_says_what_to_use():
    from meshkit.basis.errors import ConfigError

    with pytest.raises(ConfigError, match="debug, info"):
        configure_logging("loud", stream=io.StringIO())


async def test_parse_body_errors():
    async with client(service(access_log=False)) as c:
        bad_json = await c.post("/items", content=b"{nope", headers={"content-type": "application/json"})
        empty = await c.post("/items", content=b"")
        invalid = await c.post("/items", json={"name": "", "price": -1})
    assert bad_json.status_code == BadRequest.status and bad_json.json()["error"]["reason"] == "invalid_json"
    assert empty.status_code == 400
    assert invalid.status_code == Unprocessable.status
    body = invalid.json()["error"]
    assert body["reason"] == "validation_failed"
    assert {d["loc"] for d in body["details"]} == {"name", "price"}
    assert all(d["message"] and d["type"] for d in body["details"])


async def test_parse_query_lists_defaults_and_errors():
    async with client(service(access_log=False)) as c:
        ok = await c.get("/search", params=[("tag", "a"), ("tag", "b"), ("limit", "5")])
        defaults = await c.get("/search")
        bad = await c.get("/search", params={"limit": "many"})
    assert ok.json() == {"tag": ["a", "b"], "limit": 5, "q": None}
    assert defaults.json() == {"tag": [], "limit": 10, "q": None}
    assert bad.status_code == 422 and bad.json()["error"]["details"][0]["loc"] == "limit"


async def test_require_identity():
    async with client(service(access_log=False)) as c:
        anon = await c.get("/me")
        known = await c.get("/me", headers={"x-meshkit-subject": "u-1"})
    assert anon.status_code == Unauthorized.status and "gateway" in anon.json()["error"]["message"]
    assert known.json() == {"subject": "u-1"}


def test_json_response_types():
    r = json_response({"when": dt.datetime(2024, 1, 2, tzinfo=dt.UTC), "ids": frozenset({2, 1}),
                       "item": NewItem(name="a", price=1)}, status=202, headers={"etag": '"v1"'})
    assert r.status_code == 202 and r.headers["etag"] == '"v1"' and r.media_type == "application/json"
    assert orjson.loads(r.body) == {"when": "2024-01-02T00:00:00+00:00", "ids": [1, 2],
                                    "item": {"name": "a", "price": 1}}


@pytest.mark.timing
async def test_checks_run_concurrently_with_a_timeout_each():
    checks = HealthChecks(timeout=0.2)

    async def ok():
        await asyncio.sleep(0.1)

    async def hangs():
        await asyncio.sleep(10)

    async def fails():
        raise ConnectionError("db refused")

    checks.add("a", ok)
    checks.add("b", ok)
    checks.add("hang", hangs)
    checks.add("db", fails)
    loop = asyncio.get_running_loop()
    start = loop.time()
    passed, report = await checks.run()
    assert loop.time() - start < 0.5  # concurrent, bounded by the timeout
    assert not passed
    assert report["a"]["ok"] and report["b"]["ok"]
    assert not report["hang"]["ok"] and "within 0.2s" in report["hang"]["error"]
    assert report["db"] == {"ok": False, "duration_ms": report["db"]["duration_ms"],
                            "error": "ConnectionError: db refused"}


async def test_readyz_and_livez_endpoints():
    svc = service(access_log=False)
    healthy = {"up": True}

    async def flaky():
        if not healthy["up"]:
            raise RuntimeError("nats disconnected")

    svc.add_check("nats", flaky)
    async with client(svc) as c:
        assert (await c.get("/livez")).json()["status"] == "alive"
        not_registered = await c.get("/readyz")
        svc.registered = True  # what start() sets once the registry has us
        ready = await c.get("/readyz")
        healthy["up"] = False
        failing = await c.get("/readyz")
    assert not_registered.status_code == 503 and not_registered.json()["error"]["reason"] == "not_ready"
    assert ready.status_code == 200 and ready.json()["checks"]["nats"]["ok"] is True
    assert failing.status_code == 503
    details = failing.json()["error"]["details"]
    assert details["failed"] == ["nats"] and "nats disconnected" in details["checks"]["nats"]["error"]


def test_access_fast_path_writes_the_same_line_as_logging():
    from meshkit.basis.logs import log_fields

    # A logger tree of its own whose root has only our handler: the direct path.
    root = logging.RootLogger(logging.INFO)
    lg = logging.Logger("meshkit.access.test")
    lg.parent = root
    stream = io.StringIO()
    handler = BufferedLineHandler(stream, interval=60)
    handler.setFormatter(JsonFormatter(service="fast", instance="f-1"))
    root.addHandler(handler)
    fields = {"method": "GET", "route": "/a/{b}", "path": "/a/%s", "status": 200, "duration_ms": 0.5}
    try:
        log_fields(lg, logging.INFO, "GET /a/%s 200", fields)
        lg.filters.append(lambda record: True)  # a filter on the way: through logging instead
        log_fields(lg, logging.INFO, "GET /a/%s 200", fields)
        quiet = logging.Logger("meshkit.access.quiet", logging.WARNING)
        quiet.parent = root
        log_fields(quiet, logging.INFO, "dropped", fields)
        handler.flush()
    finally:
        handler.close()
    direct, via_logging = (orjson.loads(line) for line in stream.getvalue().splitlines())
    assert direct.keys() == via_logging.keys()
    for line in (direct, via_logging):
        assert line["message"] == "GET /a/%s 200" and line["service"] == "fast" and line["level"] == "info"
        assert {k: line[k] for k in fields} == fields


def test_request_histogram_buckets_and_counts():
    from prometheus_client.parser import text_string_to_metric_families

    from meshkit.basis.metrics import ServiceMetrics

    m = ServiceMetrics("h")
    for seconds in (0.0005, 0.001, 0.004, 0.3, 99.0):
        m.observe("/r", "POST", 201, seconds)
    m.observe("/r", "POST", 500, 0.002)
    m.in_flight = 3
    families = {f.name: f for f in text_string_to_metric_families(m.render().decode())}
    buckets = {s.labels["le"]: s.value for s in families["http_request_duration_seconds"].samples
               if s.name.endswith("_bucket") and s.labels["status"] == "201"}
    assert buckets["0.001"] == 2 and buckets["0.005"] == 3 and buckets["0.25"] == 3
    assert buckets["0.5"] == 4 and buckets["10.0"] == 4 and buckets["+Inf"] == 5
    totals = {(s.labels["status"]): s.value for s in families["http_requests"].samples}
    assert totals == {"201": 5, "500": 1}
    assert families["http_requests_in_flight"].samples[0].value == 3
