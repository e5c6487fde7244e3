"""Hostile HTTP against a real gateway, over raw sockets.

The gateway routes to static upstreams (no registry needed): a well-behaved one
that echoes what reached it, and a raw socket server that answers whatever a
test asks for (garbage, a body cut short). Every case here broke the gateway
once: a pipeline that exhausted the stack, a streamed body that broke off and
left the client waiting, and so on.
"""

from __future__ import annotations

import asyncio
import gzip
import re

import orjson
import pytest

from meshkit.gateway.app import Gateway
from meshkit.gateway.messages import Limits, Response
from meshkit.gateway.security import Authenticator
from meshkit.gateway.security.testing import TokenIssuer
from meshkit.gateway.server import serve
from meshkit.gateway.settings import GatewaySettings

BIG = b"z" * 1_000_000


class Echo:
    """The upstream: answers with what reached it (method, target, headers)."""

    def __init__(self) -> None:
        self.calls = 0
        self.revalidated = 0

    async def handle(self, req):
        self.calls += 1
        if req.path.endswith("/slow"):
            await asyncio.sleep(0.2)
        if req.path.endswith("/fixed"):  # the same answer to GET and HEAD (the server drops HEAD's body)
            return Response(200, [(b"content-type", b"text/plain")], b"f" * 1234)
        if req.path.endswith("/part"):  # a well-behaved JSON API: revalidation, ranges, compression
            if req.header(b"if-none-match") is not None:
                return Response(304, [(b"etag", b'"p1"')])
            if req.header(b"range") is not None:
                return Response(206, [(b"content-range", b"bytes 0-1/9")], b'{"')
            if b"gzip" in (req.header(b"accept-encoding") or b""):
                return Response(200, [(b"content-type", b"application/json"), (b"content-encoding", b"gzip")],
                                gzip.compress(b'{"ok": 1}'))
            return Response(200, [(b"content-type", b"application/json"), (b"etag", b'"p1"')], b'{"ok": 1}')
        if "/revalidate/" in req.path:  # fresh for 1 s, never to be served stale; then failing
            self.revalidated += 1
            if self.revalidated > 1:
                return Response(503, [], b"down")
            return Response(200, [(b"cache-control", req.path.rsplit("/", 1)[1].replace("_", "=").encode())], b"v1")
        if req.path.endswith("/big"):
            return Response(200, [(b"content-type", b"application/octet-stream")], BIG)
        if req.path.endswith(("/204", "/304")):
            status = int(req.path[-3:])
            return Response(status, [(b"etag", b'"v1"')] if status == 304 else [])
        body = orjson.dumps({"method": req.method, "target": req.target, "body": len(req.body),
                             "headers": [[k.decode(), v.decode()] for k, v in req.headers]})
        return Response(200, [(b"content-type", b"application/json")], body)


class Broken:
    """A raw upstream: the answer to ``/x/<name>`` is ``ANSWERS[name]`` written as is, then it closes."""

    ANSWERS = {
        "short": b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n" + b"s" * 1000,
        "short-chunked": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3e8\r\n" + b"c" * 1000 + b"\r\n",
        "chunked": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
        "switch": b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
    }

    async def handle(self, reader, writer) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        name = head.split(b" ", 2)[1].rsplit(b"/", 1)[1].decode()
        writer.write(self.ANSWERS[name])
        await writer.drain()
        await asyncio.sleep(0.05)
        writer.close()


@pytest.fixture
async def gw(tmp_path):
    echo, broken = Echo(), Broken()
    up = await serve(echo.handle, "127.0.0.1", 0)
    raw_up = await asyncio.start_server(broken.handle, "127.0.0.1", 0)
    raw_port = raw_up.sockets[0].getsockname()[1]
    routes = tmp_path / "routes.yaml"
    routes.write_text(f"""routes:
  - name: echo
    match: {{prefix: /e/}}
    upstream: {{url: "http://127.0.0.1:{up.port}"}}
  - name: cached
    match: {{prefix: /c/}}
    upstream: {{url: "http://127.0.0.1:{up.port}"}}
    cache: {{ttl: 30s}}
  - name: limited
    match: {{prefix: /rl/}}
    upstream: {{url: "http://127.0.0.1:{up.port}"}}
    rate_limit: {{rate: 0.001, burst: 1, key: ip}}
  - name: admin-host
    match: {{prefix: /h/, host: admin.example.com}}
    upstream: {{url: "http://127.0.0.1:{up.port}/admin"}}
  - name: any-host
    match: {{prefix: /h/}}
    upstream: {{url: "http://127.0.0.1:{up.port}/public"}}
  - name: guarded
    match: {{prefix: /p/admin/}}
    upstream: {{url: "http://127.0.0.1:{up.port}"}}
    auth: required
  - name: open
    match: {{prefix: /p/}}
    upstream: {{url: "http://127.0.0.1:{up.port}"}}
  - name: both
    match: {{path: "/agg/{{id}}"}}
    aggregate:
      parts:
        one: {{url: "http://127.0.0.1:{up.port}", path: "/one/{{id}}/part"}}
        two: {{url: "http://127.0.0.1:{up.port}", path: "/two/{{id}}/part"}}
  - name: shop-cors
    match: {{prefix: /cors/}}
    upstream: {{url: "http://127.0.0.1:{up.port}"}}
    cors: {{allow_origins: ["https://shop.example"]}}
  - name: echo-stream
    match: {{prefix: /se/}}
    upstream: {{url: "http://127.0.0.1:{up.port}"}}
    stream: true
  - name: broken
    match: {{prefix: /b/}}
    upstream: {{url: "http://127.0.0.1:{raw_port}"}}
    retry: {{attempts: 0}}
  - name: broken-stream
    match: {{prefix: /bs/}}
    upstream: {{url: "http://127.0.0.1:{raw_port}"}}
    retry: {{attempts: 0}}
    stream: true
""")
    settings = GatewaySettings(host="127.0.0.1", port=0, admin_port=0, routes_file=routes,
                               registry_url="memory://gw-hostile", access_log=False, reload_interval=0,
                               trust_forwarded=True)
    g = await Gateway(settings, register=False).start()
    g.echo = echo
    yield g
    await g.stop(0.5)
    await up.stop(0.2)
    raw_up.close()


def answer(out: bytes) -> tuple[int, dict[str, str], bytes]:
    """Status, headers (lower-cased names) and body of one raw answer."""
    head, body = out.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v for k, v in (line.split(": ", 1) for line in lines[1:])}
    return int(lines[0].split(" ")[1]), headers, body


async def get(port: int, path: str, *headers: str) -> tuple[int, dict[str, str], bytes]:
    """One GET on its own connection, with raw header lines (``Host`` among them, or a default one)."""
    lines = "".join(f"{h}\r\n" for h in headers)
    if not any(h.lower().startswith("host:") for h in headers):
        lines = "Host: gw\r\n" + lines
    return answer(await exchange(port, f"GET {path} HTTP/1.1\r\n{lines}Connection: close\r\n\r\n".encode()))


async def exchange(port: int, data: bytes, timeout: float = 5.0) -> bytes:
    """Send ``data``, read until the gateway closes (``TimeoutError`` if it never does)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        await writer.drain()
        return await asyncio.wait_for(reader.read(-1), timeout)
    finally:
        writer.close()


async def test_thousands_of_pipelined_requests_behind_a_slow_one_are_all_answered_in_order(gw):
    # The first waits for the upstream; the rest (no route: answered at once) queue behind it.
    # Each answered-at-once request used to start the next from inside its own answer: the
    # stack ran out after ~300 of them and the connection hung with nothing answered.
    n = 2000
    data = (b"GET /e/slow HTTP/1.1\r\nHost: gw\r\n\r\n" + b"GET /nope HTTP/1.1\r\nHost: gw\r\n\r\n" * n
            + b"GET /e/last HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n")
    out = await exchange(gw.port, data, timeout=20)
    statuses = re.findall(rb"HTTP/1\.1 (\d{3}) ", out)
    assert statuses == [b"200", *[b"404"] * n, b"200"]
    assert b'"target":"/e/last"' in out.rsplit(b"HTTP/1.1 ", 1)[1]


@pytest.mark.parametrize("name", ["short", "short-chunked"])
async def test_a_streamed_answer_that_breaks_off_closes_the_client_connection(gw, name):
    # The upstream promises more than it sends, then closes. The head is already out, so the
    # client can only learn by the connection closing before the body is complete; it used to
    # stay open, the client waiting for the rest until its own timeout.
    out = await exchange(gw.port, f"GET /bs/x/{name} HTTP/1.1\r\nHost: gw\r\n\r\n".encode())
    head, body = out.split(b"\r\n\r\n", 1)
    assert head.startswith(b"HTTP/1.1 200 ")
    if name == "short":
        assert b"content-length: 100000" in head and len(body) < 100000
    else:
        assert not body.endswith(b"0\r\n\r\n")  # never the last chunk: the client sees it incomplete


async def test_a_cached_answer_is_never_served_for_another_host(gw):
    # The Host goes upstream as x-forwarded-host (here echoed into the body, as absolute links
    # or redirects would be): cached for one Host, the answer used to be served for every other.
    status, headers, body = await get(gw.port, "/c/page", "Host: evil.example")
    assert status == 200 and ["x-forwarded-host", "evil.example"] in orjson.loads(body)["headers"]
    status, headers, body = await get(gw.port, "/c/page", "Host: shop.example")
    assert headers["x-cache"] == "MISS" and ["x-forwarded-host", "shop.example"] in orjson.loads(body)["headers"]
    status, headers, body = await get(gw.port, "/c/page", "Host: shop.example")
    assert headers["x-cache"] == "HIT" and ["x-forwarded-host", "shop.example"] in orjson.loads(body)["headers"]


async def test_behind_a_load_balancer_the_client_address_is_the_one_it_appended(gw):
    # TRUST_FORWARDED: the load balancer appends the address it saw; what comes before is the
    # client's to choose. The first address used to name the rate-limit bucket, so a new
    # made-up address per request dodged the limit (a password-guessing limit, say).
    assert (await get(gw.port, "/rl/a", "X-Forwarded-For: 198.51.100.1, 10.0.0.1"))[0] == 200
    status, headers, _ = await get(gw.port, "/rl/a", "X-Forwarded-For: 198.51.100.2, 10.0.0.1")
    assert status == 429 and "retry-after" in headers
    assert (await get(gw.port, "/rl/a", "X-Forwarded-For: 198.51.100.2, 10.0.0.2"))[0] == 200


async def test_behind_a_load_balancer_the_scheme_is_the_one_it_says(gw):
    # TRUST_FORWARDED: X-Forwarded-Proto was dropped and replaced by the gateway's own scheme,
    # so behind a TLS-terminating balancer every upstream saw http (and built http:// links).
    def proto(body: bytes) -> list[str]:
        return [v for k, v in orjson.loads(body)["headers"] if k == "x-forwarded-proto"]

    assert proto((await get(gw.port, "/e/x", "X-Forwarded-Proto: https"))[2]) == ["https"]
    assert proto((await get(gw.port, "/e/x", "X-Forwarded-Proto: http, https"))[2]) == ["https"]  # the last one
    assert proto((await get(gw.port, "/e/x", "X-Forwarded-Proto: gopher"))[2]) == ["http"]  # nonsense: ignored
    assert proto((await get(gw.port, "/e/x"))[2]) == ["http"]


async def test_identity_headers_spelled_with_underscores_never_reach_the_upstream(gw):
    # CGI, WSGI, PHP and Django read x_meshkit_subject as x-meshkit-subject: an identity the
    # gateway strips must not pass under the other spelling.
    spoof = ("x_meshkit_subject: mallory", "X-Meshkit_Roles: admin", "x_meshkit-permissions: *",
             "X_MESHKIT_TOKEN_ID: forged", "x-meshkit-tenant: victim", "x-meshkit_client: service")
    status, _, body = await get(gw.port, "/e/x", *spoof)
    assert status == 200
    names = [k for k, _ in orjson.loads(body)["headers"]]
    assert not [k for k in names if k.replace("_", "-").startswith("x-meshkit-")], names


@pytest.mark.parametrize("path", ["/e/..;/admin", "/e/x/..;jsessionid=1/admin", "/e/.;/x", "/e/%2e%2e;x/admin"])
async def test_dot_segments_with_parameters_are_refused(gw, path):
    # Tomcat, Jetty and Spring drop ";..." from a segment, then read "..;" as "..": a way out of
    # a rewritten prefix into the upstream's other paths.
    status, _, body = await get(gw.port, path)
    assert status == 400 and orjson.loads(body)["error"]["reason"] == "bad_path"
    assert gw.echo.calls == 0


@pytest.mark.parametrize("prefix", ["/e", "/c", "/se"])  # the task-free path, the cache's path, streaming
async def test_head_answers_carry_the_length_of_the_get_answer(gw, prefix):
    # RFC 9110 §8.6: a Content-Length in an answer to HEAD is the length GET would have.
    # The gateway used to say 0 (the length of the body it did not send).
    out = await exchange(gw.port, f"HEAD {prefix}/fixed HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n".encode())
    status, headers, body = answer(out)
    assert status == 200 and headers["content-length"] == "1234" and body == b""


@pytest.mark.parametrize("prefix", ["/e", "/se"])
@pytest.mark.parametrize("status", [204, 304])
async def test_answers_without_a_body_keep_the_connection_in_step(gw, prefix, status):
    # A 204 or 304 ends with its head (RFC 9112 §6.3). The gateway used to add content-length: 0
    # (forbidden on a 204, wrong on a 304) and, when streaming, a chunked body whose last chunk
    # the client read as the start of the next answer on the connection.
    data = (f"GET {prefix}/{status} HTTP/1.1\r\nHost: gw\r\n\r\n"
            f"GET /e/fixed HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n").encode()
    out = await exchange(gw.port, data)
    head, rest = out.split(b"\r\n\r\n", 1)
    assert head.startswith(b"HTTP/1.1 %d " % status)
    assert b"content-length" not in head and b"transfer-encoding" not in head
    assert rest.startswith(b"HTTP/1.1 200 ")  # the next answer follows the head at once
    assert answer(rest)[2] == b"f" * 1234


@pytest.mark.parametrize("prefix", ["/b", "/bs"])
async def test_a_final_1xx_from_the_upstream_is_a_bad_gateway(gw, prefix):
    # A 101 to a request that asked for no protocol switch: passed on, the client would take
    # its connection for switched to another protocol.
    status, _, body = await get(gw.port, f"{prefix}/x/switch")
    assert status == 502 and orjson.loads(body)["error"]["reason"] == "upstream_failed"


async def test_a_rate_limit_added_by_a_reload_applies(tmp_path):
    # A gateway started without any rate-limited route had no limiter: a reload that added one
    # answered 500 to every request on that route.
    up = await serve(Echo().handle, "127.0.0.1", 0)
    routes = tmp_path / "routes.yaml"
    route = f"""routes:
  - name: open
    match: {{prefix: /o/}}
    upstream: {{url: "http://127.0.0.1:{up.port}"}}
"""
    routes.write_text(route)
    settings = GatewaySettings(host="127.0.0.1", port=0, admin_port=0, routes_file=routes,
                               registry_url="memory://gw-hostile-rl", access_log=False, reload_interval=0)
    g = await Gateway(settings, register=False).start()
    try:
        assert (await get(g.port, "/o/x"))[0] == 200
        routes.write_text(route + "    rate_limit: {rate: 0.001, burst: 1}\n")
        g.reload()
        assert (await get(g.port, "/o/x"))[0] == 200
        status, headers, _ = await get(g.port, "/o/x")
        assert status == 429 and headers["ratelimit-limit"] == "1" and "retry-after" in headers
    finally:
        await g.stop(0.5)
        await up.stop(0.2)


async def test_two_host_headers_are_refused(gw):
    # RFC 9112 §3.2: a proxy in front may route by the first, the gateway routed by the last.
    status, _, body = await get(gw.port, "/h/x", "Host: admin.example.com", "Host: shop.example")
    assert status == 400 and orjson.loads(body)["error"]["reason"] == "bad_host"
    # and an HTTP/1.1 request needs one (HTTP/1.0 may go without)
    status, _, body = answer(await exchange(gw.port, b"GET /e/x HTTP/1.1\r\nConnection: close\r\n\r\n"))
    assert status == 400 and orjson.loads(body)["error"]["reason"] == "bad_host"
    assert gw.echo.calls == 0
    assert answer(await exchange(gw.port, b"GET /e/x HTTP/1.0\r\n\r\n"))[0] == 200


async def test_an_absolute_form_target_names_the_host(gw):
    # RFC 9112 §3.2.2: the target's host replaces the Host header. It was ignored (routed by the
    # Host header).
    out = await exchange(gw.port, b"GET http://admin.example.com/h/x?a=1 HTTP/1.1\r\nHost: shop.example\r\n"
                                  b"Connection: close\r\n\r\n")
    seen = orjson.loads(answer(out)[2])
    assert seen["target"] == "/admin/h/x?a=1" and ["x-forwarded-host", "admin.example.com"] in seen["headers"]
    out = await exchange(gw.port, b"GET http://user@admin.example.com/h/x HTTP/1.1\r\nHost: x\r\n\r\n")
    assert answer(out)[0] == 400


async def test_a_get_with_a_body_is_not_cached(gw):
    # The cache key does not cover a body; an upstream that reads one ("fat GET") would have its
    # answer to it served to everyone else.
    out = await exchange(gw.port, b"GET /c/fat HTTP/1.1\r\nHost: gw\r\nContent-Length: 5\r\n"
                                  b"Connection: close\r\n\r\nevil!")
    assert orjson.loads(answer(out)[2])["body"] == 5
    _, headers, body = await get(gw.port, "/c/fat")
    assert headers["x-cache"] == "MISS" and orjson.loads(body)["body"] == 0


async def test_headers_that_override_method_path_or_client_address_are_not_forwarded(gw):
    # A GET allowed on a public route must not reach the upstream as a DELETE, nor as another path.
    spoof = ("X-HTTP-Method-Override: DELETE", "X-HTTP-Method: DELETE", "X-Method-Override: DELETE",
             "X-Original-URL: /admin", "X-Rewrite-URL: /admin", "X-Real-IP: 10.0.0.1", "True-Client-IP: 10.0.0.1",
             "X-Client-IP: 10.0.0.1", "X-Forwarded-Prefix: /admin", "X-Forwarded-Port: 443",
             "X-Forwarded-Server: intranet")
    status, _, body = await get(gw.port, "/e/x", *spoof, "X-Kept: yes")
    names = {k for k, _ in orjson.loads(body)["headers"]}
    assert status == 200 and "x-kept" in names
    assert not names & {h.split(":")[0].lower() for h in spoof}, names


async def test_expect_100_continue_is_answered_before_the_body(gw):
    # curl sends "Expect: 100-continue" with bodies over 1 MB and waits a second for the 100
    # before sending the body: without one, every large upload through the gateway took 1 s more.
    reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
    try:
        writer.write(b"POST /e/up HTTP/1.1\r\nHost: gw\r\nContent-Length: 5\r\nExpect: 100-continue\r\n"
                     b"Connection: close\r\n\r\n")
        await writer.drain()
        assert await asyncio.wait_for(reader.readexactly(25), 0.5) == b"HTTP/1.1 100 Continue\r\n\r\n"
        writer.write(b"hello")
        status, _, body = answer(await asyncio.wait_for(reader.read(-1), 5))
        seen = orjson.loads(body)
        assert status == 200 and seen["body"] == 5
        assert "expect" not in {k for k, _ in seen["headers"]}  # answered here, not passed on
    finally:
        writer.close()


async def test_a_transfer_coding_other_than_chunked_is_not_implemented(gw):
    # "gzip, chunked": llhttp de-chunks, and the body went upstream still gzip-coded, with no
    # header saying so (RFC 9112 §6.1: 501).
    out = await exchange(gw.port, b"POST /e/x HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"
                                  b"3\r\nabc\r\n0\r\n\r\n")
    status, headers, body = answer(out)
    assert status == 501 and headers["connection"] == "close"
    assert orjson.loads(body)["error"]["reason"] == "unsupported_transfer_coding"
    assert gw.echo.calls == 0


@pytest.mark.parametrize("prefix", ["/e", "/c"])  # the task-free path, the cache's path
async def test_a_client_that_does_not_read_gets_no_more_answers_buffered_for_it(gw, prefix):
    # 200 pipelined GETs of a 1 MB answer, and the client reads nothing: the gateway wrote
    # answer after answer into its send buffer, 200 MB for one connection.
    reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
    writer.transport.pause_reading()  # (the kernel's socket buffers still take a few answers)
    n = 200
    writer.write(f"GET {prefix}/big HTTP/1.1\r\nHost: gw\r\n\r\n".encode() * (n - 1)
                 + f"GET {prefix}/big HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n".encode())
    await writer.drain()
    await asyncio.sleep(1.0)
    buffered = sum(c.transport.get_write_buffer_size() for c in gw.server.connections)
    assert buffered < 5 * len(BIG), buffered
    writer.transport.resume_reading()  # once it reads, every answer comes, in order
    received = 0
    try:
        while True:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            assert head.startswith(b"HTTP/1.1 200 ")
            length = int(head.split(b"content-length: ")[1].split(b"\r\n")[0])
            assert length == len(BIG)
            await reader.readexactly(length)
            received += 1
    except asyncio.IncompleteReadError as exc:
        assert exc.partial == b""  # closed after the last answer, not in the middle of one
    finally:
        writer.close()
    assert received == n


@pytest.mark.parametrize("path", ["/p/%61dmin/users", "/p/adm%69n/users", "/p/%61%64%6d%69%6e/users",
                                  "/p//admin/users", "//p///admin/users"])
async def test_a_percent_encoded_spelling_takes_the_route_of_the_path_it_spells(gw, path):
    # The upstream decodes "%61dmin" to "admin" (and nginx, Spring... merge "//"); the gateway
    # matched the raw spelling, missed the guarded /p/admin/ route and sent it through the open
    # /p/ one: no authentication asked.
    status, _, body = await get(gw.port, path)
    assert status != 200 and orjson.loads(body)["error"]["reason"] == "auth_not_configured"  # the guarded route
    assert gw.echo.calls == 0
    status, _, body = await get(gw.port, "/p/%7euser/%c3%a9t%C3%A9")  # the open route: unreserved decoded, rest kept
    assert status == 200 and orjson.loads(body)["target"] == "/p/~user/%C3%A9t%C3%A9"


@pytest.mark.parametrize("path", ["/p/admin%2Fusers", "/p/admin%2fusers", "/p/x%5Cadmin"])
async def test_an_encoded_slash_is_refused(gw, path):
    # Upstreams split "admin%2Fusers" into two segments after decoding; the gateway's routes saw one.
    status, _, body = await get(gw.port, path)
    assert status == 400 and orjson.loads(body)["error"]["reason"] == "bad_path"
    assert gw.echo.calls == 0


async def test_the_admin_api_does_not_answer_web_pages(gw):
    # The admin API listens on loopback, where a browser on the same machine reaches it: a page's
    # form could POST /admin/reload or purge the cache, and a page whose name is rebound to
    # 127.0.0.1 could read the routes and every upstream address.
    reloads = gw.reloads
    out = await exchange(gw.admin_port, b"POST /admin/reload HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                                        b"Origin: https://evil.example\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
    status, _, body = answer(out)
    assert status == 403 and orjson.loads(body)["error"]["reason"] == "browser_refused" and gw.reloads == reloads
    status, _, body = await get(gw.admin_port, "/admin/upstreams", "Host: evil.example:9080")
    assert status == 403 and orjson.loads(body)["error"]["reason"] == "bad_host"
    for host in ("127.0.0.1:9080", "localhost:9080", "[::1]:9080"):  # what tools send
        assert (await get(gw.admin_port, "/admin/routes", f"Host: {host}"))[0] == 200, host


async def test_an_aggregate_asked_by_a_browser_still_gets_its_parts(gw):
    # A browser revalidates (If-None-Match), asks for gzip, may ask for a range. Passed on to the
    # parts, each answered 304, 206 or a gzip-coded body, was left out as failed: 502.
    status, _, body = await get(gw.port, "/agg/7", 'If-None-Match: "p1"', "Accept-Encoding: gzip, br",
                                "Range: bytes=0-1", "If-Modified-Since: Sat, 05 Dec 2026 00:00:00 GMT")
    assert status == 200 and orjson.loads(body) == {"one": {"ok": 1}, "two": {"ok": 1}}


async def test_a_host_name_with_its_final_dot_is_the_same_host(gw):
    # "admin.example.com." is admin.example.com to DNS; it took the route for any other host.
    status, _, body = await get(gw.port, "/h/x", "Host: ADMIN.example.com.:8080")
    assert status == 200 and orjson.loads(body)["target"] == "/admin/h/x"


async def test_a_fragment_in_the_target_is_not_sent_on(gw):
    # Clients never send one (it is theirs); a raw "#" went upstream inside the path or query
    # and split the cache by it.
    out = await exchange(gw.port, b"GET /e/x?a=1#/../frag HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n")
    status, _, body = answer(out)
    assert status == 200 and orjson.loads(body)["target"] == "/e/x?a=1"


@pytest.mark.parametrize("connection", ["", "Connection: keep-alive\r\n"])
async def test_an_http10_client_gets_a_streamed_answer_without_chunked_coding(gw, connection):
    # HTTP/1.0 has no chunked coding: the chunk sizes ended up in the downloaded body.
    out = await exchange(gw.port, f"GET /bs/x/chunked HTTP/1.0\r\nHost: gw\r\n{connection}\r\n".encode())
    status, headers, body = answer(out)
    assert status == 200 and "transfer-encoding" not in headers and body == b"hello world"
    assert headers["connection"] == "close"  # the end of the body is the end of the connection


async def test_a_cached_answer_is_never_served_to_the_same_user_with_other_grants(tmp_path):
    # Keyed by subject alone, what alice saw as an admin was served to her next token, issued
    # after the role was taken away (until the TTL ran out).
    issuer = TokenIssuer("EdDSA")
    auth = Authenticator(jwks=issuer.jwks(), issuer=issuer.issuer, audience=issuer.audience)
    up = await serve(Echo().handle, "127.0.0.1", 0)
    routes = tmp_path / "routes.yaml"
    routes.write_text(f"""routes:
  - name: mine
    match: {{prefix: /m/}}
    upstream: {{url: "http://127.0.0.1:{up.port}"}}
    auth: optional
    cache: {{ttl: 30s}}
""")
    settings = GatewaySettings(host="127.0.0.1", port=0, admin_port=0, routes_file=routes,
                               registry_url="memory://gw-hostile-grants", access_log=False, reload_interval=0)
    g = await Gateway(settings, register=False, authenticator=auth).start()
    try:
        def roles(body: bytes) -> str:
            return dict(orjson.loads(body)["headers"])["x-meshkit-roles"]

        admin, demoted = issuer.token("alice", roles=["admin"]), issuer.token("alice", roles=["user"])
        _, headers, body = await get(g.port, "/m/report", f"Authorization: Bearer {admin}")
        assert headers["x-cache"] == "MISS" and roles(body) == "admin"
        _, headers, body = await get(g.port, "/m/report", f"Authorization: Bearer {demoted}")
        assert headers["x-cache"] == "MISS" and roles(body) == "user"
        _, headers, body = await get(g.port, "/m/report", f"Authorization: Bearer {issuer.token('alice', roles=['user'])}")
        assert headers["x-cache"] == "HIT" and roles(body) == "user"  # same grants, another token: shared
    finally:
        await g.stop(0.5)
        await up.stop(0.2)


@pytest.mark.parametrize(("cc", "stale"), [("max-age_1", True), ("must-revalidate", False),
                                           ("proxy-revalidate", False)])
async def test_an_answer_that_must_be_revalidated_is_never_served_stale(gw, cc, stale):
    # RFC 9111 §5.2.2.2: "must-revalidate" forbids serving the answer stale, even when the
    # upstream fails; the gateway served it (marked STALE) for stale_if_error (300 s).
    path = f"/c/revalidate/max-age_1{'' if cc.startswith('max-age') else ',' + cc}"
    assert (await get(gw.port, path))[2] == b"v1"
    await asyncio.sleep(1.1)
    status, headers, body = await get(gw.port, path)
    if stale:
        assert status == 200 and headers["x-cache"] == "STALE" and body == b"v1"
    else:
        assert status == 503


@pytest.mark.parametrize("path", ["/e/slow", "/c/slow", "/agg/1"])
async def test_a_client_that_half_closes_after_its_request_still_gets_the_answer(gw, path):
    # `nc -N`, or a shutdown(SHUT_WR) after the request: the gateway closed at the end of input,
    # dropping every answer still on its way.
    reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
    try:
        writer.write(f"GET {path} HTTP/1.1\r\nHost: gw\r\n\r\n".encode())
        writer.write_eof()
        status, headers, _ = answer(await asyncio.wait_for(reader.read(-1), 5))
        assert status == 200 and headers["connection"] == "close"
    finally:
        writer.close()


async def test_trailer_fields_never_join_the_request_head(gw):
    # Fields after a chunked body were appended to the headers: a credential, a Host that chose
    # the route, an X-Forwarded-For that named the client, all unseen by whatever in front
    # checked the head.
    out = await exchange(gw.port, b"POST /h/x HTTP/1.1\r\nHost: shop.example\r\nTransfer-Encoding: chunked\r\n"
                                  b"Connection: close\r\n\r\n3\r\nabc\r\n0\r\nHost: admin.example.com\r\n"
                                  b"Authorization: Bearer smuggled\r\nX-Trailer: 1\r\n\r\n")
    status, _, body = answer(out)
    seen = orjson.loads(body)
    names = {k for k, _ in seen["headers"]}
    assert status == 200 and seen["target"] == "/public/h/x" and seen["body"] == 3
    assert "authorization" not in names and "x-trailer" not in names


@pytest.mark.parametrize("origin", [None, "https://evil.example", "https://shop.example"])
async def test_answers_of_a_cors_route_always_vary_by_origin(gw, origin):
    # Fetch standard, "CORS protocol and HTTP caches": the answer without CORS headers (no Origin,
    # or one not allowed) said nothing of Origin, so a CDN in front served it to the shop too.
    _, headers, _ = await get(gw.port, "/cors/x", *([f"Origin: {origin}"] if origin else []))
    assert headers["vary"] == "origin"
    assert headers.get("access-control-allow-origin") == (origin if origin == "https://shop.example" else None)


async def test_connections_past_the_limit_are_answered_503_and_closed():
    # Before: no limit; each connection may buffer a body of up to max_body_bytes, so enough
    # open connections could make the gateway hold any amount of memory.
    async def ok(req):
        return Response(200, [(b"content-type", b"text/plain")], b"ok")

    server = await serve(ok, "127.0.0.1", 0, limits=Limits(max_connections=2))
    request = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
    try:
        held = [await asyncio.open_connection("127.0.0.1", server.port) for _ in range(2)]
        for reader, writer in held:
            writer.write(request)
            assert (await reader.readuntil(b"ok")).startswith(b"HTTP/1.1 200")
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        answer = await asyncio.wait_for(reader.read(), 5)  # answered, then closed: read() ends
        assert answer.startswith(b"HTTP/1.1 503") and b"retry-after: 1" in answer
        assert b"too_many_connections" in answer
        writer.close()
        held[0][1].close()  # one leaves: a new one is taken again
        await asyncio.sleep(0.1)
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(request)
        assert (await reader.readuntil(b"ok")).startswith(b"HTTP/1.1 200")
        writer.close()
        held[1][1].close()
    finally:
        await server.stop(0.5)
