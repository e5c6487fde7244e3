"""Forwarder.call_nowait: the first attempt without a task, answered through ``done`` exactly once."""

import time

from meshkit.basis.errors import BadGateway, Unavailable
from meshkit.basis.http.errors import ConnectError
from meshkit.gateway.forward import Forwarder
from meshkit.gateway.loader import parse_routes
from meshkit.gateway.metrics import GatewayMetrics
from meshkit.gateway.table import compile_table
from meshkit.gateway.upstream import Pools, PoolSettings

ROUTES = """
routes:
  - name: r
    match: {prefix: /}
    upstream: {url: "http://127.0.0.1:9"}
    retry: {attempts: 0}
"""


class ScriptedTransport:
    """Answers every send_nowait at once with ``(response, exc)`` (a unit-test double of HttpTransport)."""

    def __init__(self, response, exc) -> None:
        self.answer = (response, exc)

    def send_nowait(self, host, port, method, target, headers, body, timeout, callback) -> bool:
        callback(*self.answer)
        return True


def forward(answer: tuple) -> tuple:
    metrics = GatewayMetrics()
    table = compile_table(parse_routes(ROUTES), Pools(PoolSettings(), lambda name: []), "<test>")
    route = table.routes[0]
    got: list[tuple] = []
    Forwarder(ScriptedTransport(*answer), metrics).call_nowait(
        route, route.pool, None, "GET", "/", [], b"", time.monotonic() + 5, lambda out, err: got.append((out, err)))
    return got, metrics


def test_a_transport_error_becomes_the_gateways_answer_once():
    got, metrics = forward((None, ConnectError("refused")))
    assert len(got) == 1
    out, err = got[0]
    assert out is None and isinstance(err, Unavailable)
    assert metrics.upstream_errors == {("url:http://127.0.0.1:9", "ConnectError"): 1}


def test_any_other_exception_is_a_502_not_a_crash_in_the_callback():
    # The transport's stale-connection resend passes on whatever its new attempt raised.
    got, metrics = forward((None, RuntimeError("boom")))
    assert len(got) == 1
    out, err = got[0]
    assert out is None and isinstance(err, BadGateway) and "boom" in err.message
    assert metrics.upstream_errors == {("url:http://127.0.0.1:9", "RuntimeError"): 1}
