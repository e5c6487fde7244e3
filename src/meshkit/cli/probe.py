"""Tiny network checks the command makes before and while it works.

Deliberately dependency-free (plain asyncio streams): they run before anything
else is up and must answer fast, with a yes or no, never a stack trace.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from urllib.parse import urlsplit

DEFAULT_NATS_URL = "nats://127.0.0.1:4223"


def nats_url() -> str:
    """``MESHKIT_NATS_URL`` or the one ``meshkit up`` starts by default."""
    return os.environ.get("MESHKIT_NATS_URL") or DEFAULT_NATS_URL


def host_port(url: str, default_port: int = 4222) -> tuple[str, int]:
    """Host and port of the first server in a (possibly comma-separated) NATS URL."""
    first = url.split(",", 1)[0].strip()
    if "://" not in first:
        first = "nats://" + first
    parts = urlsplit(first)
    return parts.hostname or "127.0.0.1", parts.port or default_port


async def nats_answers(url: str, timeout: float = 1.0) -> bool:
    """True when a NATS server at ``url`` greets us with its ``INFO`` line."""
    host, port = host_port(url)
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
    except (OSError, TimeoutError):
        return False
    try:
        line = await asyncio.wait_for(reader.readline(), timeout)
        return line.startswith(b"INFO")
    except (OSError, TimeoutError):
        return False
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


async def http_status(host: str, port: int, path: str = "/readyz", timeout: float = 1.0) -> int | None:
    """The status code of ``GET path``, or ``None`` when nothing answers in time."""
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
    except (OSError, TimeoutError):
        return None
    try:
        writer.write(f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n\r\n".encode())
        await writer.drain()
        line = await asyncio.wait_for(reader.readline(), timeout)
        parts = line.split()
        if len(parts) >= 2 and parts[0].startswith(b"HTTP/") and parts[1].isdigit():
            return int(parts[1])
        return None
    except (OSError, TimeoutError):
        return None
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
