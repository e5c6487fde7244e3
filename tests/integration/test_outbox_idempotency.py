"""Idempotency-Key middleware in the runtime's stack, on memory, SQLite and PostgreSQL stores; races."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest
from sqlalchemy import func, select
from starlette.routing import Route

from meshkit.basis.errors import Internal
from meshkit.basis.idempotency import MemoryIdempotencyStore, SqlIdempotencyStore, idempotency
from meshkit.basis.outbox.testing import create_tables
from meshkit.basis.service import Service
from meshkit.basis.settings import ServiceSettings
from meshkit.basis.storage import session_factory, transaction
from meshkit.basis.storage.testing import scratch_engine
from meshkit.basis.web import json_response


@pytest.fixture(params=["memory", "sqlite", "postgresql"])
def backend(request, tmp_path):
    if request.param == "postgresql":
        return request.getfixturevalue("postgres_url")
    return f"sqlite+aiosqlite:///{tmp_path / 'idem.db'}" if request.param == "sqlite" else None


@pytest.fixture
async def store(backend):
    if backend is None:
        yield MemoryIdempotencyStore()
        return
    async with scratch_engine(backend) as engine:
        await create_tables(engine, "idem")
        yield SqlIdempotencyStore(session_factory(engine), prefix="idem")


def make_service(store, calls: list[bytes], **options) -> Service:
    async def create(request):
        body = await request.body()
        calls.append(body)
        await asyncio.sleep(0.15)  # long enough for duplicates to arrive while it runs
        if b"boom" in body:
            raise Internal("exploded")
        return json_response({"n": len(calls), "echo": body.decode()}, status=201, headers={"location": f"/o/{len(calls)}"})

    settings = ServiceSettings(name="idem", access_log=False, request_metrics=False)
    return Service(settings, routes=[Route("/orders", create, methods=["POST"])],
                   middleware=[idempotency(store, **options)])


def client(service: Service) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=service), base_url="http://idem")


async def test_runs_once_and_replays_the_stored_response(store):
    calls: list[bytes] = []
    async with client(make_service(store, calls)) as http:
        first = await http.post("/orders", content=b'{"a":1}', headers={"idempotency-key": "k1"})
        again = await http.post("/orders", content=b'{"a":1}', headers={"idempotency-key": "k1"})
        other = await http.post("/orders", content=b'{"a":2}', headers={"idempotency-key": "k1"})
        plain = await http.post("/orders", content=b'{"a":1}')
    assert first.status_code == 201 and again.status_code == 201
    assert again.json() == first.json() == {"n": 1, "echo": '{"a":1}'}
    assert again.headers["location"] == "/o/1" and again.headers["idempotent-replayed"] == "true"
    assert "idempotent-replayed" not in first.headers
    assert other.status_code == 422 and other.json()["error"]["reason"] == "idempotency_key_reused"
    assert plain.status_code == 201 and len(calls) == 2


async def test_concurrent_duplicates_wait_for_the_first(store):
    calls: list[bytes] = []
    async with client(make_service(store, calls)) as http:
        answers = await asyncio.gather(*(
            http.post("/orders", content=b"same", headers={"idempotency-key": "race"}) for _ in range(8)
        ))
    assert len(calls) == 1
    assert {r.status_code for r in answers} == {201}
    assert {r.text for r in answers} == {answers[0].text}


async def test_concurrent_duplicates_on_two_instances_without_waiting_get_409(store):
    calls: list[bytes] = []
    one, two = make_service(store, calls, wait=0.0), make_service(store, calls, wait=0.0)
    async with client(one) as a, client(two) as b:
        answers = await asyncio.gather(*(
            (a if i % 2 else b).post("/orders", content=b"x", headers={"idempotency-key": "two"}) for i in range(6)
        ))
    assert len(calls) == 1
    codes = sorted(r.status_code for r in answers)
    assert codes.count(201) == 1 and codes.count(409) == 5
    busy = next(r for r in answers if r.status_code == 409)
    assert busy.json()["error"]["reason"] == "idempotency_in_progress" and busy.headers["retry-after"] == "1"


async def test_a_failure_frees_the_key_and_keys_expire(store):
    calls: list[bytes] = []
    async with client(make_service(store, calls, ttl=0.4)) as http:
        failed = await http.post("/orders", content=b"boom", headers={"idempotency-key": "f"})
        retried = await http.post("/orders", content=b"boom", headers={"idempotency-key": "f"})
        assert failed.status_code == 500 and retried.status_code == 500 and len(calls) == 2
        ok = await http.post("/orders", content=b"fine", headers={"idempotency-key": "e"})
        time.sleep(0.5)  # noqa: ASYNC251 - wall clock must pass for the key to expire
        after = await http.post("/orders", content=b"other", headers={"idempotency-key": "e"})
        bad = await http.post("/orders", content=b"x", headers={"idempotency-key": "a" * 300})
    assert ok.status_code == 201 and after.status_code == 201 and after.json()["n"] == 4
    assert bad.status_code == 400 and bad.json()["error"]["reason"] == "bad_idempotency_key"



@pytest.mark.timing
async def test_a_request_that_lost_its_claim_neither_frees_nor_overwrites_the_next_claim(store):
    # A outlives lock_timeout, B takes the key over, then A fails. Before: A's abandon deleted
    # B's claim (as a success of A's would have overwritten it), so C ran the handler a third time while B ran.
    calls: list[bytes] = []
    release = [asyncio.Event(), asyncio.Event()]

    async def create(request):
        calls.append(await request.body())
        n = len(calls)
        if n <= 2:
            await release[n - 1].wait()
        if n == 1:
            raise Internal("A failed, late")
        return json_response({"n": n}, status=201)

    settings = ServiceSettings(name="idem", access_log=False, request_metrics=False)
    service = Service(settings, routes=[Route("/orders", create, methods=["POST"])],
                      middleware=[idempotency(store, lock_timeout=1.0)])
    async with client(service) as http:

        def post():
            return asyncio.create_task(http.post("/orders", content=b"same", headers={"idempotency-key": "slow"}))

        a = post()
        await asyncio.sleep(1.1)  # past lock_timeout: A's claim is stale, B takes the key over
        b = post()
        while len(calls) < 2:
            await asyncio.sleep(0.01)
        release[0].set()
        assert (await a).status_code == 500  # A's failure must not free B's claim
        c = post()  # waits for B ...
        await asyncio.sleep(0.2)
        release[1].set()  # ... which answers well within lock_timeout
        b, c = await b, await c
    assert b.status_code == 201 and b.json() == {"n": 2}
    assert c.status_code == 201 and c.json() == {"n": 2} and c.headers["idempotent-replayed"] == "true"
    assert len(calls) == 2


async def test_a_client_gone_before_its_body_ended_claims_nothing(store):
    # Before: the body read so far was fingerprinted and handed to the handler as if whole; its
    # answer (often a 400) was stored, and the client's retry with the whole body got 422.
    calls: list[bytes] = []
    service = make_service(store, calls)
    chunks = iter([{"type": "http.request", "body": b'{"a":', "more_body": True}, {"type": "http.disconnect"}])

    async def receive():
        return next(chunks)

    sent: list[dict] = []

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
             "path": "/orders", "raw_path": b"/orders", "query_string": b"", "root_path": "",
             "headers": [(b"host", b"idem"), (b"idempotency-key", b"cut"), (b"content-length", b"7")],
             "client": ("127.0.0.1", 1), "server": ("idem", 80)}
    await service(scope, receive, send)
    assert calls == []
    async with client(service) as http:
        retry = await http.post("/orders", content=b'{"a":1}', headers={"idempotency-key": "cut"})
    assert retry.status_code == 201 and calls == [b'{"a":1}']


async def test_a_try_again_answer_is_not_stored(store):
    # Before: a 429 (or 408, 425) is below 500 and was stored: every retry with the key got it back.
    calls: list[int] = []

    async def create(request):
        calls.append(1)
        if len(calls) == 1:  # an answer of its own (a raised error frees the key on the way out anyway)
            return json_response({"error": {"reason": "rate_limited"}}, status=429, headers={"retry-after": "1"})
        return json_response({"n": len(calls)}, status=201)

    settings = ServiceSettings(name="idem", access_log=False, request_metrics=False)
    service = Service(settings, routes=[Route("/orders", create, methods=["POST"])], middleware=[idempotency(store)])
    async with client(service) as http:
        first = await http.post("/orders", content=b"x", headers={"idempotency-key": "throttled"})
        retry = await http.post("/orders", content=b"x", headers={"idempotency-key": "throttled"})
        again = await http.post("/orders", content=b"x", headers={"idempotency-key": "throttled"})
    assert first.status_code == 429 and retry.status_code == 201 and retry.json() == {"n": 2}
    assert again.status_code == 201 and again.headers["idempotent-replayed"] == "true" and len(calls) == 2


async def stored_keys(store) -> int:
    if isinstance(store, MemoryIdempotencyStore):
        return len(store._rows)
    async with transaction(store.sessions, write=False) as s:
        return int((await s.execute(select(func.count()).select_from(store.table))).scalar_one())


@pytest.mark.timing
async def test_expired_keys_are_deleted_by_the_store_itself(store):
    # Before: only an explicit purge() deleted them (nothing called it): the table, or the
    # memory store's dict, grew by every key ever used.
    store.purge_every = 0.0
    calls: list[bytes] = []
    async with client(make_service(store, calls, ttl=0.8)) as http:  # each request takes 0.15 s
        for key in ("e1", "e2", "e3"):
            assert (await http.post("/orders", content=key.encode(), headers={"idempotency-key": key})).status_code == 201
        assert await stored_keys(store) == 3
        await asyncio.sleep(1.0)
        assert (await http.post("/orders", content=b"e4", headers={"idempotency-key": "e4"})).status_code == 201
    assert await stored_keys(store) == 1  # e4's own
