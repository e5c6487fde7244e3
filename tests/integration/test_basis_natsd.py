"""The embedded NATS server: real binary, JetStream on, clean stop, clear errors."""

import socket

import nats
import pytest

from meshkit.basis.errors import ConfigError
from meshkit.basis.natsd import EmbeddedNats, find_binary


def test_binary_comes_from_the_venv_package():
    assert find_binary().endswith("nats-server")


async def test_starts_with_jetstream_and_stops(tmp_path):
    server = EmbeddedNats(port=0, data_dir=tmp_path, log_file=tmp_path / "nats.log")
    await server.start()
    try:
        nc = await nats.connect(server.url)
        js = nc.jetstream()
        await js.add_stream(name="T", subjects=["t.>"])
        ack = await js.publish("t.x", b"1")
        assert ack.seq == 1
        await nc.close()
        assert (tmp_path / "nats" / "jetstream").is_dir()
    finally:
        await server.stop()
    assert not server.running


async def test_port_in_use_is_one_clear_line(tmp_path):
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        with pytest.raises(ConfigError) as info:
            await EmbeddedNats(port=port, data_dir=tmp_path).start()
    msg = str(info.value)
    assert str(port) in msg and "MESHKIT_NATS_PORT" in msg and "\n" not in msg


async def test_server_dies_with_its_parent_even_on_sigkill(tmp_path):
    import asyncio
    import os
    import signal
    import subprocess
    import sys

    script = (
        "import asyncio, sys\n"
        "from meshkit.basis.natsd import EmbeddedNats\n"
        "async def main():\n"
        f"    s = await EmbeddedNats(port=0, data_dir={str(tmp_path)!r}, log_file={str(tmp_path / 'n.log')!r}).start()\n"
        "    print(s.process.pid, flush=True)\n"
        "    await asyncio.sleep(60)\n"
        "asyncio.run(main())\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE)  # noqa: ASYNC220
    try:
        line = await asyncio.wait_for(asyncio.to_thread(parent.stdout.readline), 15)
        nats_pid = int(line)
        os.kill(nats_pid, 0)  # alive
        parent.send_signal(signal.SIGKILL)
        parent.wait()
        for _ in range(100):
            try:
                os.kill(nats_pid, 0)
            except ProcessLookupError:
                break
            await asyncio.sleep(0.05)
        else:
            os.kill(nats_pid, signal.SIGKILL)
            raise AssertionError("nats-server outlived its SIGKILLed parent")
    finally:
        if parent.poll() is None:
            parent.kill()
