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
