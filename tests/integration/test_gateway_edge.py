"""Edge duties on real sockets: size limits, pipelining, keep-alive, TLS, admin API, CORS, streaming."""

from __future__ import annotations

import asyncio
import datetime
import ssl

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from meshkit.basis.http import HttpTransport
from meshkit.gateway.app import Gateway
from meshkit.gateway.messages import Limits, Response
from meshkit.gateway.server import serve
from meshkit.gateway.settings import GatewaySettings


async def echo(req):
    return Response(200, [(b"content-type", b"text/plain")], f"{req.method} {req.target} {len(req.body)}".encode())


async def raw(port: int, data: bytes, ssl_ctx=None, read_until_close: bool = True) -> bytes:
    reader, writer = await asyncio.open_connection("localhost" if ssl_ctx else "127.0.0.1", port, ssl=ssl_ctx)
    writer.write(data)
    await writer.drain()
    out = await asyncio.wait_for(reader.read(-1) if read_until_close else reader.read(65536), 5)
    writer.close()
    return out


async def test_header_and_body_limits_answer_431_and_413():
    server = await serve(echo, "127.0.0.1", 0, limits=Limits(max_header_bytes=1024, max_body_bytes=100))
    try:
        big = b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 2000 + b"\r\n\r\n"
        out = await raw(server.port, big)
        assert out.startswith(b"HTTP/1.1 431 ") and b'"reason":"headers_too_large"' in out
        assert b"connection: close" in out
        body = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 500\r\n\r\n" + b"x" * 500
        out = await raw(server.port, body)
        assert out.startswith(b"HTTP/1.1 413 ") and b'"reason":"payload_too_large"' in out
        chunked = (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                   + b"".join(b"32\r\n" + b"y" * 50 + b"\r\n" for _ in range(4)) + b"0\r\n\r\n")
        out = await raw(server.port, chunked)
        assert out.startswith(b"HTTP/1.1 413 ")
        out = await raw(server.port, b"NOT HTTP AT ALL\r\n\r\n")
        assert out.startswith(b"HTTP/1.1 400 ")
    finally:
        await server.stop(0.5)


async def test_a_head_at_the_limit_passes_and_one_that_never_ends_is_cut_off():
    server = await serve(echo, "127.0.0.1", 0, limits=Limits(max_header_bytes=1024, max_body_bytes=100))
    try:
        # the target plus each "name: value\r\n" counts: exactly 1024 bytes pass, one more is 431
        pad = 1024 - len(b"/") - len(b"Host: x\r\n") - len(b"X-Pad: \r\n") - len(b"Connection: close\r\n")
        for size, status in ((pad, b"200"), (pad + 1, b"431")):
            out = await raw(server.port, b"GET / HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"p" * size + b"\r\n"
                            b"Connection: close\r\n\r\n")
            assert out.startswith(b"HTTP/1.1 " + status + b" "), (size, out[:80])
        # a head sent in small pieces that never ends: answered 431 and closed while it is still arriving
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(b"GET / HTTP/1.1\r\nHost: x\r\nX-Endless: ")
        answer = asyncio.ensure_future(reader.read(-1))
        for _ in range(200):  # 20 kB in all, 20 times the limit
            if answer.done():
                break
            writer.write(b"e" * 100)
            await writer.drain()
            await asyncio.sleep(0.002)
        out = await asyncio.wait_for(answer, 5)
        writer.close()
        assert out.startswith(b"HTTP/1.1 431 ") and b"connection: close" in out
    finally:
        await server.stop(0.5)


async def test_pipelined_requests_are_answered_in_order_and_keep_alive_holds():
    async def slow_first(req):
        if req.path == "/slow":
            await asyncio.sleep(0.1)
        return await echo(req)

    server = await serve(slow_first, "127.0.0.1", 0)
    try:
        data = (b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n"
                b"POST /b HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc"
                b"GET /c?q=1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        out = await raw(server.port, data)
        bodies = [part.split(b"\r\n\r\n", 1)[1][:20] for part in out.split(b"HTTP/1.1 200 OK")[1:]]
        assert [b.split(b"HTTP")[0] for b in bodies] == [b"GET /slow 0", b"POST /b 3", b"GET /c?q=1 0"]
        t = HttpTransport()
        try:
            for i in range(5):
                r = await t.request("127.0.0.1", server.port, "GET", f"/k{i}")
                assert r.body == f"GET /k{i} 0".encode()
            assert len(server.connections) == 1  # one keep-alive connection served them all
        finally:
            await t.close()
    finally:
        await server.stop(0.5)


def _self_signed(tmp_path):
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


@pytest.fixture
async def gateway(tmp_path):
    """A gateway (TLS on, memory registry) routing to a static upstream, with CORS and streaming routes."""
    upstream = await serve(echo, "127.0.0.1", 0)
    big = b"z" * 300_000

    async def download(req):
        return Response(200, [(b"content-type", b"application/octet-stream")], big)

    files = await serve(download, "127.0.0.1", 0)
    routes = tmp_path / "routes.yaml"
    routes.write_text(f"""routes:
  - name: echo
    match: {{prefix: /e/}}
    upstream: {{url: "http://127.0.0.1:{upstream.port}/base"}}
    cors: {{allow_origins: ["https://shop.example"], allow_credentials: true}}
  - name: files
    match: {{prefix: /files/}}
    upstream: {{url: "http://127.0.0.1:{files.port}"}}
    stream: true
""")
    cert, key = _self_signed(tmp_path)
    settings = GatewaySettings(host="127.0.0.1", port=0, admin_port=0, routes_file=routes,
                               registry_url="memory://gw-edge", tls_cert=cert, tls_key=key, access_log=True,
                               reload_interval=0)
    gw = await Gateway(settings, register=False).start()
    client_ctx = ssl.create_default_context(cafile=str(cert))
    yield gw, client_ctx, big
    await gw.stop(0.5)
    await upstream.stop(0.2)
    await files.stop(0.2)


async def test_tls_termination_keep_alive_and_cors(gateway):
    gw, ctx, _ = gateway
    reader, writer = await asyncio.open_connection("localhost", gw.port, ssl=ctx, server_hostname="localhost")
    try:
        for i in range(3):
            writer.write(f"GET /e/x{i} HTTP/1.1\r\nHost: localhost\r\nOrigin: https://shop.example\r\n\r\n".encode())
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
            length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                              if line.lower().startswith(b"content-length")))
            body = await reader.readexactly(length)
            assert head.startswith(b"HTTP/1.1 200 ")
            assert b"access-control-allow-origin: https://shop.example" in head
            assert b"access-control-allow-credentials: true" in head
            assert body == f"GET /base/e/x{i} 0".encode()
        writer.write(b"OPTIONS /e/x HTTP/1.1\r\nHost: localhost\r\nOrigin: https://shop.example\r\n"
                     b"Access-Control-Request-Method: POST\r\n\r\n")
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert head.startswith(b"HTTP/1.1 204 ") and b"access-control-allow-methods:" in head
    finally:
        writer.close()
    with pytest.raises(ssl.SSLError):
        await raw(gw.port, b"GET / HTTP/1.1\r\n\r\n", ssl_ctx=ssl.create_default_context())  # untrusted cert


async def test_streamed_download_and_admin_api(gateway):
    gw, ctx, big = gateway
    out = await raw(gw.port, b"GET /files/big HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
                    ssl_ctx=ctx)
    head, body = out.split(b"\r\n\r\n", 1)
    assert head.startswith(b"HTTP/1.1 200 ") and body == big
    t = HttpTransport()
    try:
        routes = (await t.request("127.0.0.1", gw.admin_port, "GET", "/admin/routes")).json()
        assert [r["name"] for r in routes["routes"]] == ["echo", "files"]
        ups = (await t.request("127.0.0.1", gw.admin_port, "GET", "/admin/upstreams")).json()
        member = next(iter(ups.values()))["members"][0]
        assert member["breaker"]["state"] == "closed" and "in_flight" in member
        r = await t.request("127.0.0.1", gw.admin_port, "POST", "/admin/reload")
        assert r.status == 200 and r.json()["routes"] == 2
        r = await t.request("127.0.0.1", gw.admin_port, "GET", "/admin/reload")
        assert r.status == 405
        metrics = (await t.request("127.0.0.1", gw.admin_port, "GET", "/metrics")).body.decode()
        assert 'gateway_requests_total{route="files",method="GET",status="200"} 1' in metrics
        assert "gateway_request_duration_seconds_bucket" in metrics
        assert (await t.request("127.0.0.1", gw.admin_port, "GET", "/nope")).status == 404
    finally:
        await t.close()
