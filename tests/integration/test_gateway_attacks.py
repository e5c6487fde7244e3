"""Attacks on authentication, through the gateway, over real HTTP.

One gateway built from settings alone (``GATEWAY_JWKS_URL`` pointing to a JWKS
served over HTTP, ``GATEWAY_API_KEYS_FILE``), one real upstream registered in a
real NATS registry that records every request reaching it. Every forged,
expired or malformed credential must get a 401 with a ``WWW-Authenticate``
challenge and must never reach the upstream; a client must never be able to
choose the identity the upstream sees.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
import uuid

import orjson
import pytest

from meshkit.basis.context import IDENTITY_HEADERS
from meshkit.basis.http import HttpTransport
from meshkit.basis.instance import Instance
from meshkit.basis.registry import open_registry
from meshkit.basis.registry.registration import Registration
from meshkit.gateway.app import Gateway
from meshkit.gateway.messages import Response
from meshkit.gateway.security import hash_key
from meshkit.gateway.security.testing import TokenIssuer, b64url
from meshkit.gateway.security.throttle import FailureThrottle
from meshkit.gateway.server import serve
from meshkit.gateway.settings import GatewaySettings

ISS, AUD = "https://sso.meshkit.test", "meshkit"
API_KEY, EXPIRED_KEY = f"mk-live-{uuid.uuid4().hex}", f"mk-old-{uuid.uuid4().hex}"
SPOOF = [(b"x-meshkit-subject", b"mallory"), (b"X-MeshKit-Roles", b"admin"),
         (b"x-meshkit-permissions", b"orders:write,*"), (b"x-meshkit-token-id", b"forged"),
         (b"x-meshkit-tenant", b"victim"), (b"x-meshkit-client", b"service"), (b"x-meshkit-subject", b"root")]

ROUTES = """
routes:
  - name: required
    match: {prefix: /req/}
    upstream: {service: api}
    auth: required
  - name: optional
    match: {prefix: /opt/}
    upstream: {service: api}
    auth: optional
  - name: open
    match: {prefix: /none/}
    upstream: {service: api}
    auth: none
  - name: writers
    match: {prefix: /write/}
    upstream: {service: api}
    auth: required
    permissions: ["orders:write"]
  - name: admins
    match: {prefix: /admins/}
    upstream: {service: api}
    auth: required
    roles: [admin]
"""


class Recorder:
    """The upstream: counts requests and keeps the headers of the last one."""

    def __init__(self) -> None:
        self.calls = 0
        self.headers: list[tuple[str, str]] = []

    async def handle(self, req):
        self.calls += 1
        self.headers = [(k.decode(), v.decode()) for k, v in req.headers]
        return Response(200, [(b"content-type", b"application/json")], orjson.dumps({"ok": True}))

    def identity(self) -> dict[str, list[str]]:
        """Every identity header the last request carried (all values, to catch duplicates)."""
        out: dict[str, list[str]] = {}
        for k, v in self.headers:
            if k in IDENTITY_HEADERS:
                out.setdefault(k, []).append(v)
        return out


class Jwks:
    """The issuer's JWKS endpoint, over real HTTP, counting fetches."""

    def __init__(self, doc: dict) -> None:
        self.doc, self.fetches = doc, 0

    async def handle(self, req):
        if req.path != "/.well-known/jwks.json":
            return Response(404, [], b"")
        self.fetches += 1
        return Response(200, [(b"content-type", b"application/json")], orjson.dumps(self.doc))


class Stack:
    pass


@pytest.fixture(scope="module")
async def stack(nats_server, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("attacks")
    rsa, ed = TokenIssuer("RS256", kid="rsa-1"), TokenIssuer("EdDSA", kid="ed-1")
    jwks = Jwks(rsa.jwks(ed))
    jwks_server = await serve(jwks.handle, "127.0.0.1", 0)
    keys = tmp / "api-keys.yaml"
    keys.write_text(f"""keys:
  - id: partner-1
    sha256: {hash_key(API_KEY)}
    subject: partner-acme
    roles: [partner]
    permissions: ["orders:write"]
    tenant: acme
  - id: partner-old
    sha256: {hash_key(EXPIRED_KEY)}
    subject: partner-old
    expires: 2001-01-01T00:00:00Z
""")
    routes = tmp / "routes.yaml"
    routes.write_text(ROUTES)
    url = f"{nats_server}?bucket=gw_atk_{uuid.uuid4().hex[:8]}"
    registry = await open_registry(url)
    upstream = Recorder()
    up_server = await serve(upstream.handle, "127.0.0.1", 0)
    reg = Registration(registry, Instance("api", "api-1", "127.0.0.1", up_server.port), ttl=3.0, interval=1.0)
    await reg.start()
    settings = GatewaySettings(
        host="127.0.0.1", port=0, admin_port=0, routes_file=routes, registry_url=url, access_log=False,
        reload_interval=0, jwks_url=f"http://127.0.0.1:{jwks_server.port}/.well-known/jwks.json",
        issuer=ISS, audience=AUD, leeway=5, api_keys_file=str(keys),
        auth_failure_burst=1_000_000)  # every attack here comes from one address; the budget has its own test
    gw = await Gateway(settings, register=False).start()
    await gw.view.wait_for("api", 1)
    s = Stack()
    s.rsa, s.ed, s.jwks, s.upstream, s.gw, s.http = rsa, ed, jwks, upstream, gw, HttpTransport()

    async def call(path: str, headers=None, method: str = "GET"):
        if isinstance(headers, dict):
            headers = [(k.encode(), v.encode()) for k, v in headers.items()]
        return await s.http.request("127.0.0.1", gw.port, method, path, headers=headers, timeout=5)

    s.call = call
    yield s
    await s.http.close()
    await gw.stop(0.5)
    await reg.stop()
    await up_server.stop(0.5)
    await jwks_server.stop(0.5)
    await registry.close()


def _segments(token: str) -> tuple[str, str, str]:
    h, p, sig = token.split(".")
    return h, p, sig


def _raw(header: dict, payload: dict, signature: bytes = b"") -> str:
    return f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(payload).encode())}.{b64url(signature)}"


def attacks(rsa: TokenIssuer, ed: TokenIssuer) -> dict[str, tuple[str, str]]:
    """Every forged, stale or malformed token we know of: name -> (token, why it must be refused)."""
    now = int(time.time())
    good = rsa.token("alice", roles=["user"], permissions=["orders:read"])
    h, p, sig = _segments(good)
    claims = rsa.claims("alice", roles=["user"])
    hs_input = f"{b64url(json.dumps({'alg': 'HS256', 'typ': 'JWT', 'kid': rsa.kid}).encode())}.{p}"
    hs_sig = hmac.new(rsa.public_pem(), hs_input.encode(), hashlib.sha256).digest()
    rogue = TokenIssuer("EdDSA", kid=ed.kid)  # a key the issuer never published, claiming a known kid
    flipped = sig[:20] + ("A" if sig[20] != "A" else "B") + sig[21:]
    bad_sig, malformed = "signature is invalid", "malformed token"
    return {
        "expired": (rsa.token("alice", ttl=-120), "expired"),
        "expired (EdDSA)": (ed.token("alice", ttl=-120), "expired"),
        "not yet valid (nbf)": (rsa.token("alice", ttl=900, nbf=now + 600), "not valid yet"),
        "issued in the future (iat)": (rsa.token("alice", ttl=900, iat=now + 600), "issued in the future"),
        "no exp": (rsa.sign({k: v for k, v in claims.items() if k != "exp"}), "no 'exp'"),
        "wrong iss": (rsa.token("alice", iss="https://evil.example"), "another issuer"),
        "wrong aud": (rsa.token("alice", aud="another-service"), "another audience"),
        "wrong aud (list)": (rsa.token("alice", aud=["a", "b"]), "another audience"),
        "no sub": (rsa.sign({k: v for k, v in claims.items() if k != "sub"}), "no subject"),
        "roles not a list": (rsa.token("alice", roles="admin"), "'roles' must be a list"),
        "alg none": (_raw({"alg": "none", "typ": "JWT", "kid": rsa.kid}, {**claims, "roles": ["admin"]}),
                     "alg 'none'"),
        "alg None with a signature": (_raw({"alg": "None", "kid": rsa.kid}, claims, b"sig"), "alg 'none'"),
        "alg missing": (_raw({"typ": "JWT", "kid": rsa.kid}, claims, b"sig"), "not accepted"),
        "HS256 signed with the RSA public key": (f"{hs_input}.{b64url(hs_sig)}", "'HS256' is not accepted"),
        "RS256 header on an EdDSA key": (rsa.sign(claims, headers={"kid": ed.kid}), "is for EdDSA"),
        "unknown kid": (TokenIssuer("EdDSA", kid="ghost").token("alice"), "unknown signing key 'ghost'"),
        "unknown kid outside Latin-1": (TokenIssuer("EdDSA", kid="\u674e\r\n").token("alice"), "unknown signing key"),
        "no kid": (_raw({"alg": "EdDSA"}, claims, b"x" * 64), "no 'kid'"),
        "known kid, foreign key": (rogue.token("alice", roles=["admin"]), bad_sig),
        "attacker's key embedded in the header": (
            rogue.token("alice", roles=["admin"], headers={"jwk": rogue.jwk, "jku": "http://127.0.0.1:1/jwks"}),
            bad_sig),
        "tampered payload": (f"{h}.{b64url(json.dumps({**claims, 'roles': ['admin']}).encode())}.{sig}", bad_sig),
        "tampered header": (f"{b64url(json.dumps({'alg': 'RS256', 'kid': rsa.kid, 'x': 1}).encode())}.{p}.{sig}",
                            bad_sig),
        "bad signature": (f"{h}.{p}.{flipped}", bad_sig),
        "truncated signature": (f"{h}.{p}.{sig[:-10]}", bad_sig),
        "empty signature": (f"{h}.{p}.", bad_sig),
        "crit header": (rsa.sign(claims, headers={"crit": ["exp"]}), "critical header"),
        "two segments": (f"{h}.{p}", malformed),
        "four segments": (f"{good}.{sig}", malformed),
        "not base64": ("!!!.???.***", malformed),
        "header not JSON": (f"{b64url(b'not json')}.{p}.{sig}", malformed),
        "header not an object": (f"{b64url(b'[1]')}.{p}.{sig}", malformed),
        "garbage": ("not-a-token", malformed),
        "oversized": (f"{h}.{b64url(b'x' * 9000)}.{sig}", "too long"),
        # Signed, but the identity headers cannot carry them as they are: the upstream would read
        # two roles ("reader", "admin"), a trimmed "admin", a forged header line, or "?".
        "role with a comma": (rsa.token("alice", roles=["reader,admin"]), "cannot be passed on"),
        "role with a leading space": (rsa.token("alice", roles=[" admin", "user"]), "cannot be passed on"),
        "permission with a comma (scope)": (rsa.sign({**claims, "scope": "orders:read,orders:write"}),
                                            "cannot be passed on"),
        "subject with CR LF": (rsa.token("alice\r\nx-meshkit-roles: admin"), "cannot be passed on"),
        "subject outside Latin-1": (rsa.token("\u674e"), "cannot be passed on"),
        "tenant with a control character": (rsa.token("alice", tenant="acme\x00"), "cannot be passed on"),
    }


async def test_every_forged_or_stale_token_is_401_and_never_reaches_the_upstream(stack):
    fetches_before = stack.jwks.fetches
    cases = attacks(stack.rsa, stack.ed)
    for name, (token, why) in cases.items():
        for path in ("/req/orders", "/opt/orders", "/write/orders"):  # a bad token is never "anonymous"
            before = stack.upstream.calls
            r = await stack.call(path, {"authorization": f"Bearer {token}"})
            assert r.status == 401, (name, path, r.status, r.body)
            challenge = r.header("www-authenticate") or ""
            assert challenge.startswith('Bearer realm="meshkit"') and 'error="invalid_token"' in challenge, (name, challenge)
            err = r.json()["error"]
            assert err["reason"] == "invalid_token" and why in err["details"]["problem"], (name, err)
            assert stack.upstream.calls == before, f"{name} reached the upstream on {path}"
    # The unknown kid made the gateway look for a rotated key once; its repeats did not.
    assert stack.jwks.fetches - fetches_before == 1


async def test_other_schemes_and_empty_credentials_are_401(stack):
    before = stack.upstream.calls
    for value in ("Basic YWxpY2U6cGFzc3dvcmQ=", "Bearer", "Bearer ", "Token abc", "bearer"):
        r = await stack.call("/req/orders", {"authorization": value})
        assert r.status == 401 and (r.header("www-authenticate") or "").startswith("Bearer"), (value, r.body)
    r = await stack.call("/req/orders")  # no credential at all: a challenge without an error code (RFC 6750)
    assert r.status == 401 and r.header("www-authenticate") == 'Bearer realm="meshkit"'
    assert r.json()["error"]["reason"] == "unauthenticated"
    assert stack.upstream.calls == before


async def test_valid_tokens_pass_with_identity_injected_and_spoofed_headers_dropped(stack):
    jti = uuid.uuid4().hex
    token = stack.rsa.token("alice", roles=["admin", "user"], permissions=["orders:write"], tenant="acme", jti=jti)
    r = await stack.call("/req/orders", [(b"authorization", f"Bearer {token}".encode()), *SPOOF])
    assert r.status == 200, r.body
    assert stack.upstream.identity() == {
        "x-meshkit-subject": ["alice"], "x-meshkit-roles": ["admin,user"], "x-meshkit-permissions": ["orders:write"],
        "x-meshkit-token-id": [jti], "x-meshkit-tenant": ["acme"], "x-meshkit-client": ["user"]}
    # Grants from the token open the guarded routes.
    assert (await stack.call("/write/orders", {"authorization": f"Bearer {token}"}, "POST")).status == 200
    assert (await stack.call("/admins/x", {"authorization": f"Bearer {token}"})).status == 200
    # EdDSA tokens work too, and a service token says so.
    svc = stack.ed.token("billing", permissions=["orders:write"], client_kind="service")
    r = await stack.call("/opt/orders", [(b"authorization", f"Bearer {svc}".encode()), *SPOOF])
    assert r.status == 200
    ident = stack.upstream.identity()
    assert ident["x-meshkit-subject"] == ["billing"] and ident["x-meshkit-client"] == ["service"]
    assert ident["x-meshkit-roles"] == [""]  # the token has none; the client's "admin" is gone


@pytest.mark.parametrize("path", ["/none/x", "/opt/x"])
async def test_anonymous_spoofed_identity_never_reaches_the_upstream(stack, path):
    r = await stack.call(path, SPOOF)
    assert r.status == 200
    assert stack.upstream.identity() == {}


async def test_auth_none_route_vouches_for_nobody_even_with_a_valid_token(stack):
    token = stack.rsa.token("alice", roles=["admin"])
    r = await stack.call("/none/x", [(b"authorization", f"Bearer {token}".encode()), *SPOOF])
    assert r.status == 200 and stack.upstream.identity() == {}


async def test_spoofed_identity_alone_does_not_pass_a_required_route(stack):
    before = stack.upstream.calls
    for path in ("/req/x", "/write/x", "/admins/x"):
        r = await stack.call(path, SPOOF)
        assert r.status == 401 and r.header("www-authenticate"), path
    assert stack.upstream.calls == before


async def test_header_smuggling_is_refused_before_routing(stack):
    # A space before the colon or a folded line would let a lenient parser keep an
    # identity header under a name we do not strip: the gateway refuses the request.
    before = stack.upstream.calls
    for extra in (b"x-meshkit-subject : mallory\r\n", b"X-Foo: a\r\n x-meshkit-subject: mallory\r\n"):
        reader, writer = await asyncio.open_connection("127.0.0.1", stack.gw.port)
        writer.write(b"GET /none/x HTTP/1.1\r\nHost: gw\r\n" + extra + b"Connection: close\r\n\r\n")
        await writer.drain()
        out = await asyncio.wait_for(reader.read(-1), 5)
        writer.close()
        assert out.startswith(b"HTTP/1.1 400 "), out[:80]
    assert stack.upstream.calls == before


async def test_missing_role_or_permission_is_403_and_never_reaches_the_upstream(stack):
    reader = stack.rsa.token("bob", roles=["user"], permissions=["orders:read"])
    before = stack.upstream.calls
    r = await stack.call("/write/orders", {"authorization": f"Bearer {reader}"}, "POST")
    assert r.status == 403
    err = r.json()["error"]
    assert err["reason"] == "forbidden" and "orders:write" in err["message"]
    assert err["details"] == {"missing_roles": [], "missing_permissions": ["orders:write"]}
    assert 'error="insufficient_scope"' in r.header("www-authenticate")
    r = await stack.call("/admins/x", {"authorization": f"Bearer {reader}"})
    assert r.status == 403 and r.json()["error"]["details"]["missing_roles"] == ["admin"]
    # Spoofed grants next to a real token change nothing.
    r = await stack.call("/admins/x", [(b"authorization", f"Bearer {reader}".encode()), *SPOOF])
    assert r.status == 403
    assert stack.upstream.calls == before


async def test_api_keys_via_header(stack):
    r = await stack.call("/write/orders", [(b"x-api-key", API_KEY.encode()), *SPOOF], "POST")
    assert r.status == 200, r.body
    assert stack.upstream.identity() == {
        "x-meshkit-subject": ["partner-acme"], "x-meshkit-roles": ["partner"],
        "x-meshkit-permissions": ["orders:write"], "x-meshkit-token-id": ["partner-1"],
        "x-meshkit-tenant": ["acme"], "x-meshkit-client": ["apikey"]}
    assert all(k != "x-api-key" and API_KEY not in v for k, v in stack.upstream.headers)  # the secret stays here
    before = stack.upstream.calls
    for bad in (API_KEY[:-1] + ("0" if API_KEY[-1] != "0" else "1"), "nope", EXPIRED_KEY):
        r = await stack.call("/req/orders", {"x-api-key": bad})
        assert r.status == 401 and 'error="invalid_token"' in r.header("www-authenticate"), bad
        assert r.json()["error"]["reason"] == "invalid_token"
    assert "expired" in r.json()["error"]["message"]
    r = await stack.call("/admins/x", {"x-api-key": API_KEY})  # a valid key without the role
    assert r.status == 403
    # With both credentials, the bearer token is the one used: a bad token is not rescued by a good key.
    r = await stack.call("/req/orders", {"authorization": "Bearer not.a.token", "x-api-key": API_KEY})
    assert r.status == 401
    assert stack.upstream.calls == before


async def test_dot_segments_cannot_walk_from_an_open_route_into_a_guarded_one(stack):
    before = stack.upstream.calls
    for path in ("/none/../req/x", "/none/%2e%2e/req/x", "/none/%2E%2E%2Freq/x", "/none/..%2freq/x",
                 "/none/.%2e/req/x", "/none/..\\req/x", "/none/./../admins/x"):
        r = await stack.call(path)
        assert r.status == 400 and r.json()["error"]["reason"] == "bad_path", (path, r.status, r.body)
    assert stack.upstream.calls == before


async def test_an_address_spending_its_failed_authentications_gets_429_not_signature_checks(stack):
    # Before: authentication runs before the (per-user) rate limit, so every made-up token from one
    # address cost a signature check, without bound: a cheap way to keep the gateway's core busy.
    good = stack.ed.token("alice", roles=["user"], permissions=["orders:read"])
    assert (await stack.call("/req/orders", {"Authorization": f"Bearer {good}"})).status == 200  # cached now
    saved = stack.gw.authenticator.throttle
    stack.gw.authenticator.throttle = FailureThrottle(rate=0.5, burst=3)
    calls = stack.upstream.calls
    try:
        forged = [stack.ed.token("mallory", exp=int(time.time()) - 3600) for _ in range(5)]
        statuses = [(await stack.call("/req/orders", {"Authorization": f"Bearer {t}"})).status for t in forged[:3]]
        assert statuses == [401, 401, 401]
        refused = await stack.call("/req/orders", {"Authorization": f"Bearer {forged[3]}"})
        assert refused.status == 429 and refused.header("retry-after") == "2"
        assert orjson.loads(refused.body)["error"]["reason"] == "auth_failures"
        bad_key = await stack.call("/req/orders", {"X-API-Key": "mk-made-up"})  # API keys spend the same budget
        assert bad_key.status == 429
        assert stack.upstream.calls == calls
        # A token already verified is still served; a new one waits like any credential to check.
        assert (await stack.call("/req/orders", {"Authorization": f"Bearer {good}"})).status == 200
        fresh = stack.ed.token("bob", roles=["user"])
        assert (await stack.call("/req/orders", {"Authorization": f"Bearer {fresh}"})).status == 429
        assert stack.gw.authenticator.throttle.refused == 3
    finally:
        stack.gw.authenticator.throttle = saved
