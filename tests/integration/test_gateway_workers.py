"""Gateway workers: several processes on one port (SO_REUSEPORT), supervised by worker 0."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx

from meshkit.basis.natsd import free_port


def children_of(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            found.append(int(entry.name))
    return found


def gone(pid: int) -> bool:
    """Exited (or a zombie waiting to be reaped by init)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


async def test_workers_share_the_port_are_restarted_and_stop_together(nats_server, tmp_path):
    port, admin = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GATEWAY_", "MESHKIT_"))}
    env.update(GATEWAY_PORT=str(port), GATEWAY_ADMIN_PORT=str(admin), GATEWAY_WORKERS="2",
               MESHKIT_NATS_URL=nats_server, MESHKIT_DATA_DIR=str(tmp_path), MESHKIT_INSTANCE_ID="gw-workers")
    main = subprocess.Popen([sys.executable, "-m", "meshkit.gateway.main"], env=env,  # noqa: ASYNC220
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        workers: list[int] = []
        for _ in range(200):
            workers = children_of(main.pid)
            if workers:
                break
            await asyncio.sleep(0.05)
        assert len(workers) == 1, "worker 0 should start exactly one more worker"
        async with httpx.AsyncClient() as client:
            for _ in range(200):
                try:
                    if (await client.get(f"http://127.0.0.1:{admin}/livez")).status_code == 200:
                        break
                except httpx.TransportError:
                    await asyncio.sleep(0.05)
            await asyncio.sleep(1.0)  # the extra worker binds the port too
            # Fresh connections each time: the kernel spreads them; every one is answered.
            for _ in range(40):
                async with httpx.AsyncClient() as fresh:
                    assert (await fresh.get(f"http://127.0.0.1:{port}/livez")).status_code == 200
        # A worker that dies is started again.
        os.kill(workers[0], signal.SIGKILL)
        for _ in range(100):
            again = children_of(main.pid)
            if again and again != workers:
                break
            await asyncio.sleep(0.05)
        else:
            raise AssertionError("the killed worker was not restarted")
        main.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(asyncio.to_thread(main.wait), 20)
        assert code == 0
        assert not children_of(main.pid)
        assert all(gone(pid) for pid in again)
    finally:
        if main.poll() is None:
            main.kill()
