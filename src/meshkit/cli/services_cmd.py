"""``meshkit services``: who is registered, as a table or JSON, once or live."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
import time
from collections.abc import Iterable
from typing import IO, Any

import orjson

from meshkit.basis.errors import MeshkitError
from meshkit.basis.instance import Instance
from meshkit.cli.output import format_age, format_table
from meshkit.cli.probe import nats_answers

COLUMNS = ("service", "instance_id", "address", "port", "version", "status", "age")
HEADERS = {"instance_id": "INSTANCE"}
#: ``--watch`` redraws at least this often, so ages move.
REFRESH = 1.0
CLEAR = "\x1b[H\x1b[2J"


def rows(instances: Iterable[Instance], now: float | None = None) -> list[dict[str, Any]]:
    """One row per instance, sorted by service then instance id; ``age`` in seconds."""
    now = time.time() if now is None else now
    out = [
        {
            "service": i.service,
            "instance_id": i.instance_id,
            "address": i.address,
            "port": i.port,
            "version": i.version,
            "status": i.status,
            "age": round(max(0.0, now - i.started_at), 1),
            "url": i.url,
        }
        for i in instances
    ]
    return sorted(out, key=lambda r: (r["service"], _natural(r["instance_id"])))


def render_table(data: list[dict[str, Any]]) -> str:
    """The table users read; ages as ``3m12s``."""
    if not data:
        return "no services registered"
    shown = [{**r, "age": format_age(r["age"])} for r in data]
    return format_table(shown, COLUMNS, HEADERS)


def render_json(data: list[dict[str, Any]]) -> str:
    return orjson.dumps(data).decode()


def not_running_message(url: str) -> str:
    return (f"nothing answers at {url}: start the stack with `make up` (or `meshkit up`), "
            "or set MESHKIT_NATS_URL to where its NATS runs")


async def list_services(url: str, *, as_json: bool, out: IO[str]) -> int:
    """Print the registered instances once; the exit code."""
    from meshkit.basis.registry import open_registry

    if not await nats_answers(url):
        print(not_running_message(url), file=sys.stderr)
        return 1
    registry = await open_registry(url)
    try:
        data = rows(await registry.list())
    finally:
        await registry.close()
    print(render_json(data) if as_json else render_table(data), file=out, flush=True)
    return 0


async def watch_services(url: str, *, as_json: bool, out: IO[str]) -> int:
    """Print the table again on every change (JSON: one list per line) until Ctrl-C."""
    from meshkit.basis.registry import open_registry
    from meshkit.basis.registry.view import RegistryView

    if not await nats_answers(url):
        print(not_running_message(url), file=sys.stderr)
        return 1
    registry = await open_registry(url)
    view = RegistryView(registry)
    changed, stop = asyncio.Event(), asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    tty = out.isatty()
    last = None
    try:
        await view.start()
        view.subscribe(lambda _service: changed.set())
        while not stop.is_set():
            data = rows(view.all_instances())
            if as_json:
                key = [{k: v for k, v in r.items() if k != "age"} for r in data]
                if key != last:  # JSON consumers want changes, not ticking ages
                    last = key
                    print(render_json(data), file=out, flush=True)
            elif tty:
                print(CLEAR + render_table(data) + "\n\n(watching; Ctrl-C stops)", file=out, flush=True)
            elif (key := [r["instance_id"] + r["url"] for r in data]) != last:
                last = key
                print(render_table(data) + "\n", file=out, flush=True)
            changed.clear()
            waiters = [asyncio.ensure_future(changed.wait()), asyncio.ensure_future(stop.wait())]
            await asyncio.wait(waiters, timeout=REFRESH, return_when=asyncio.FIRST_COMPLETED)
            for w in waiters:
                w.cancel()
    finally:
        with contextlib.suppress(Exception):
            await view.close()
        with contextlib.suppress(Exception):
            await registry.close()
    return 0


def command(url: str, *, as_json: bool, watch: bool, out: IO[str] | None = None) -> int:
    """Run ``meshkit services``; 0, or 1 when nothing answers at ``url``."""
    out = sys.stdout if out is None else out
    run = watch_services if watch else list_services
    try:
        return asyncio.run(run(url, as_json=as_json, out=out))
    except MeshkitError as exc:  # NATS answers but the registry cannot be read (no JetStream...)
        print(f"meshkit services: {exc.message}", file=sys.stderr)
        return 1


def _natural(text: str) -> tuple[str, int]:
    # catalog-2 before catalog-10
    head, _, tail = text.rpartition("-")
    return (head, int(tail)) if tail.isdigit() else (text, -1)
