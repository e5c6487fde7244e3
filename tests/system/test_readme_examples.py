"""The README's examples work as written: the service example runs, answers and stops cleanly."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from meshkit.basis.natsd import free_port

README = Path(__file__).resolve().parents[2] / "README.md"


def python_block_after(heading: str) -> str:
    text = README.read_text()
    section = text.split(f"## {heading}", 1)[1]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match, f"no python example under '## {heading}' in README.md"
    return match.group(1)


@pytest.mark.system
async def test_writing_a_service_example_runs(tmp_path):
    source = tmp_path / "hello.py"
    source.write_text(python_block_after("Writing a service"))
    port = free_port()
    env = {
        **os.environ,
        "HELLO_PORT": str(port),
        "MESHKIT_REGISTRY_URL": "memory://readme",
        "MESHKIT_DATA_DIR": str(tmp_path / "data"),
    }
    proc = subprocess.Popen(  # noqa: ASYNC220 - a user's `python hello.py`
        [sys.executable, str(source)], env=env, cwd=tmp_path,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            for _ in range(200):
                try:
                    ready = await client.get("/readyz")
                    if ready.status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.05)
            else:
                raise AssertionError(f"the README service never got ready: {proc.stderr.read1().decode()[-2000:]}")
            hello = await client.get("/hello")
            assert hello.json() == {"hello": "world"}
            assert hello.headers["x-request-id"]
            metrics = await client.get("/metrics")
            assert 'route="/hello"' in metrics.text
        proc.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(asyncio.to_thread(proc.wait), 15)
        assert code == 0
    finally:
        if proc.poll() is None:
            proc.kill()
