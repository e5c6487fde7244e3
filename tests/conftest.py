"""Shared fixtures: real engines, started per test session.

- ``nats_server``: the real nats-server with JetStream on a free port (or the
  server named by ``MESHKIT_TEST_NATS_URL``).
- ``postgres_url``: a fresh PostgreSQL database per session, or a skip that says why.
- ``redis_url``: the local Redis, or a skip that says why.
- ``database_url``: each test twice, on its own SQLite file and on the session's PostgreSQL.
"""

from __future__ import annotations

import asyncio
import os
import socket
import uuid

import pytest

from meshkit.basis.natsd import EmbeddedNats
from meshkit.basis.tasks import stop_task

PG_DSN = os.environ.get("MESHKIT_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("MESHKIT_TEST_REDIS", "redis://127.0.0.1:6379/0")


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


@pytest.fixture(scope="session", autouse=True)
async def _stop_leftover_tasks():
    """At the end of the session, stop tasks a test left running, before the loop closes.

    The loop's own close cancels them once and waits without a limit; on Python 3.11
    a task whose cancellation was swallowed by ``asyncio.wait_for`` (a leaked registry
    watch) would hang the run there. ``stop_task`` cancels again, and gives up.
    """
    yield
    current = asyncio.current_task()
    for task in [t for t in asyncio.all_tasks() if t is not current]:
        await stop_task(task, timeout=2.0)


@pytest.fixture(scope="session")
async def nats_server(tmp_path_factory):
    """A real NATS server with JetStream for this test session."""
    external = os.environ.get("MESHKIT_TEST_NATS_URL")
    if external:
        yield external
        return
    server = EmbeddedNats(port=0, data_dir=tmp_path_factory.mktemp("nats"))
    await server.start()
    yield server.url
    await server.stop()


@pytest.fixture(scope="session")
async def postgres_url():
    """An empty PostgreSQL database for this session, as an asyncpg SQLAlchemy URL."""
    if not _reachable("127.0.0.1", 5432) and "MESHKIT_TEST_POSTGRES" not in os.environ:
        pytest.skip("PostgreSQL not reachable on 127.0.0.1:5432 (set MESHKIT_TEST_POSTGRES to a DSN to run these)")
    import asyncpg

    name = f"meshkit_test_{uuid.uuid4().hex[:10]}"
    try:
        conn = await asyncpg.connect(PG_DSN)
    except Exception as exc:  # a server that refuses us is the same as none, for tests
        pytest.skip(f"PostgreSQL at {PG_DSN} refused the connection: {exc}")
    await conn.execute(f'CREATE DATABASE "{name}"')
    await conn.close()
    base = PG_DSN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://", 1)
    yield f"{base}/{name}"
    conn = await asyncpg.connect(PG_DSN)
    await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    await conn.close()


@pytest.fixture(scope="session")
def redis_url():
    """The local Redis, or a skip that says why."""
    host_port = REDIS_URL.split("://", 1)[1].split("/", 1)[0]
    host, port = host_port.rsplit(":", 1)
    if not _reachable(host, int(port)):
        pytest.skip(f"Redis not reachable at {REDIS_URL} (set MESHKIT_TEST_REDIS to run these)")
    return REDIS_URL


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path):
    """A SQLite file of the test's own, then (second run) the session's PostgreSQL database."""
    if request.param == "postgresql":
        return request.getfixturevalue("postgres_url")
    return f"sqlite+aiosqlite:///{tmp_path}/test.db"


@pytest.fixture
def anyio_backend():
    return "asyncio"


def pytest_collection_modifyitems(config, items):
    # A test that asserts wall-clock timing fails when a loaded 2-core machine
    # starves the event loop for a second: it gets two more tries, no other test does.
    for item in items:
        if item.get_closest_marker("timing"):
            item.add_marker(pytest.mark.flaky(reruns=2, reruns_delay=1))


def pytest_configure(config):
    # uvloop for the whole session when present: it is what services run on.
    try:
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    except ImportError:
        pass
