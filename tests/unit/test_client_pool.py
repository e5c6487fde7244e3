"""ServicePool: registry changes keep per-instance state; errors say why nothing is available."""

from __future__ import annotations

from meshkit.basis.client.breaker import CircuitBreaker
from meshkit.basis.client.outlier import OutlierDetector
from meshkit.basis.client.pool import ServicePool
from meshkit.basis.client.response import Response
from meshkit.basis.errors import Conflict, MeshkitError
from meshkit.basis.instance import Instance


def inst(iid: str, port: int, **meta) -> Instance:
    return Instance("catalog", iid, "127.0.0.1", port, metadata=meta)


def test_sync_keeps_state_of_instances_that_stay():
    pool = ServicePool("catalog", breaker=lambda: CircuitBreaker(min_calls=1, failure_ratio=0.0))
    pool.sync([inst("a", 1), inst("b", 2)])
    a = pool.endpoints[0]
    a.begin()
    pool.record(a, False)
    assert a.breaker.state == "open"
    pool.sync([inst("a", 1), inst("c", 3)])
    assert pool.endpoints[0] is a and a.in_flight == 1 and a.breaker.state == "open"
    assert [ep.key for ep in pool.endpoints] == ["catalog.a", "catalog.c"]
    assert {pool.pick().key for _ in range(50)} == {"catalog.c"}
    # Moved to another port: a new endpoint, fresh breaker.
    pool.sync([inst("a", 9), inst("c", 3)])
    assert pool.endpoints[0] is not a and pool.endpoints[0].breaker.state == "closed"


def test_unavailable_errors_name_the_service_and_the_cause():
    pool = ServicePool("catalog", breaker=lambda: CircuitBreaker(min_calls=1, failure_ratio=0.0),
                       detector=OutlierDetector(consecutive_failures=1, max_ejected_percent=100))
    pool.sync([])
    err = pool.unavailable()
    assert err.status == 503 and "no instance of service 'catalog'" in err.message
    pool.sync([inst("a", 1), inst("b", 2)])
    for ep in pool.endpoints:
        pool.record(ep, False)
    assert pool.pick() is None
    err = pool.unavailable()
    assert "all 2 instance(s) of service 'catalog'" in err.message and err.details["open"] == 2
    snap = pool.snapshot()["instances"]["catalog.a"]
    assert snap["breaker"]["state"] == "open" and snap["ejected"] is True and snap["in_flight"] == 0


def test_weights_come_from_metadata():
    pool = ServicePool("catalog")
    pool.sync([inst("a", 1, weight=4), inst("b", 2, weight=0)])
    assert {pool.pick().key for _ in range(50)} == {"catalog.a"}  # weight 0: drained


def test_response_helpers():
    r = Response(409, [(b"Content-Type", b"application/json")],
                 b'{"error":{"reason":"order.state","message":"already paid","details":{"id":1}}}', "s.a")
    assert r.header("content-type") == "application/json" and not r.ok and r.json()["error"]["reason"]
    try:
        r.raise_for_status()
    except Conflict as exc:
        assert exc.reason == "order.state" and exc.details == {"id": 1}
    else:
        raise AssertionError("409 did not raise Conflict")
    weird = Response(418, [], b"teapot")
    try:
        weird.raise_for_status()
    except MeshkitError as exc:
        assert exc.status == 418 and "teapot" in exc.message
    assert Response(204, [], b"").raise_for_status().status == 204
