"""What the gateway benchmark runs beside meshkit: the upstream, the peer proxies, nginx's
configuration, meshkit's route and wrk's pacing script, as program texts formatted with
ports (and the JWKS) and written to a temporary folder by :mod:`bench.gateway`."""

UPSTREAM_APP = '''
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

JWKS = {jwks!r}

async def hello(request):
    return PlainTextResponse("hello, world")

async def jwks(request):
    return Response(JWKS, media_type="application/json")

app = Starlette(routes=[Route("/jwks.json", jwks), Route("/{{path:path}}", hello)])
'''

AIOHTTP_PROXY = '''
import aiohttp
from starlette.applications import Starlette
from starlette.responses import Response
from starlette.routing import Route

UP = "http://127.0.0.1:{port}"
session = None

async def proxy(request):
    global session
    if session is None:  # created on the first request, inside the server's loop
        session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=256))
    async with session.request(request.method, UP + request.url.path, data=await request.body()) as r:
        body = await r.read()
        return Response(body, status_code=r.status, media_type=r.headers.get("content-type"))

app = Starlette(routes=[Route("/{{path:path}}", proxy, methods=["GET", "POST"])])
'''

HTTPX_PROXY = '''
import httpx
from starlette.applications import Starlette
from starlette.responses import Response
from starlette.routing import Route

client = httpx.AsyncClient(base_url="http://127.0.0.1:{port}", limits=httpx.Limits(max_connections=256))

async def proxy(request):
    r = await client.request(request.method, request.url.path, content=await request.body())
    return Response(r.content, status_code=r.status_code, media_type=r.headers.get("content-type"))

app = Starlette(routes=[Route("/{{path:path}}", proxy, methods=["GET", "POST"])])
'''

FLOOR_PROXY = '''
import asyncio, sys
import httptools, uvloop

UP = ("127.0.0.1", {port})


class Upstream(asyncio.Protocol):
    def __init__(self, client):
        self.client = client
        self.parser = httptools.HttpResponseParser(self)
        self.body = []
        self.headers = []

    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        self.parser.feed_data(data)

    def on_header(self, name, value):
        if name.lower() not in (b"content-length", b"connection", b"transfer-encoding"):
            self.headers.append(b"%s: %s\\r\\n" % (name, value))

    def on_body(self, body):
        self.body.append(body)

    def on_message_complete(self):
        body = b"".join(self.body)
        head = b"HTTP/1.1 %d OK\\r\\n%scontent-length: %d\\r\\n\\r\\n" % (
            self.parser.get_status_code(), b"".join(self.headers), len(body))
        self.body, self.headers = [], []
        self.client.transport.write(head + body)


class Client(asyncio.Protocol):
    def __init__(self):
        self.parser = httptools.HttpRequestParser(self)
        self.upstream = None
        self.headers = []

    def connection_made(self, transport):
        self.transport = transport
        self.early = b""
        asyncio.ensure_future(self.connect())

    async def connect(self):
        _, self.upstream = await asyncio.get_running_loop().create_connection(lambda: Upstream(self), *UP)
        if self.early:
            self.parser.feed_data(self.early)

    def data_received(self, data):
        if self.upstream is None:
            self.early += data
            return
        self.parser.feed_data(data)

    def on_url(self, url):
        self.url = url

    def on_header(self, name, value):
        if name.lower() not in (b"connection", b"host"):
            self.headers.append(b"%s: %s\\r\\n" % (name, value))

    def on_message_complete(self):
        req = b"%s %s HTTP/1.1\\r\\nhost: upstream\\r\\n%s\\r\\n" % (
            self.parser.get_method(), self.url, b"".join(self.headers))
        self.headers = []
        self.upstream.transport.write(req)

    def connection_lost(self, exc):
        if self.upstream is not None:
            self.upstream.transport.close()


async def main():
    server = await asyncio.get_running_loop().create_server(Client, "127.0.0.1", int(sys.argv[1]), backlog=1024)
    await server.serve_forever()

uvloop.run(main())
'''

NGINX_CONF = """
worker_processes {workers};
daemon off;
pid {tmp}/nginx.pid;
error_log {tmp}/nginx-error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/client_body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    upstream backend {{ server 127.0.0.1:{up}; keepalive 128; }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
    }}
}}
"""

ROUTES = """
routes:
  - name: bench
    match: {{prefix: /}}
    upstream: {{url: "http://127.0.0.1:{up}"}}
    auth: required
    rate_limit: {{rate: 1000000, burst: 1000000, key: user}}
    retry: {{attempts: 1}}
"""

# Each connection waits a random delay around ``interval`` ms after every answer: wrk fires
# whole-millisecond timers, and equal delays would send every connection's next request in
# the same millisecond (bursts that measure the load generator, not the proxy).
PACED = """
local interval = {interval}
{auth_line}
math.randomseed(os.time())
delay = function()
  return math.floor(interval * (0.5 + math.random()))
end
"""
