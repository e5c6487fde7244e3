"""Supervision: the backoff policy, and real child processes restarted with tagged output."""

import asyncio
import io
import sys

import pytest

from meshkit.basis.errors import ConfigError
from meshkit.cli.launch import child_env, fixed_port
from meshkit.cli.output import Console
from meshkit.cli.supervisor import ChildSpec, RestartPolicy, Supervisor, describe_exit
from meshkit.cli.system import ServiceDef


def test_backoff_doubles_up_to_the_cap():
    policy = RestartPolicy(initial=0.5, factor=2.0, maximum=4.0, reset_after=10.0)
    assert [policy.delay(n) for n in range(0, 7)] == [0.0, 0.5, 1.0, 2.0, 4.0, 4.0, 4.0]


def test_backoff_resets_after_a_long_enough_run():
    policy = RestartPolicy(reset_after=10.0)
    assert policy.next_crashes(0, uptime=0.1) == 1
    assert policy.next_crashes(3, uptime=2.0) == 4
    assert policy.next_crashes(5, uptime=10.0) == 1  # it stayed up: one crash, not a loop


def test_exit_descriptions():
    assert describe_exit(1) == "code 1"
    assert describe_exit(-9) == "signal SIGKILL"
    assert describe_exit(-15) == "signal SIGTERM"


def test_child_env_layers_file_then_ours_then_platform():
    shell = {"MESHKIT_INSTANCE_ID": "from-the-shell", "CATALOG_LOG_LEVEL": "debug", "PATH": "/bin"}
    env = child_env({"CATALOG_PORT": "9000", "CATALOG_LOG_LEVEL": "info"}, nats_url="nats://x:1",
                    data_dir="/d", instance_id="catalog-1", environ=shell)
    assert env["MESHKIT_INSTANCE_ID"] == "catalog-1"  # the platform's, always
    assert env["MESHKIT_NATS_URL"] == "nats://x:1" and env["MESHKIT_DATA_DIR"] == "/d"
    assert env["CATALOG_PORT"] == "9000" and env["PYTHONUNBUFFERED"] == "1" and env["PATH"] == "/bin"
    assert env["CATALOG_LOG_LEVEL"] == "debug"  # the user's environment beats the file


def test_services_skip_nats_websocket_support_unless_nats_is_reached_over_websocket():
    def setting(url: str, shell: dict[str, str]) -> str:
        return child_env({}, nats_url=url, data_dir="/d", instance_id="c-1", environ=shell)["MESHKIT_NATS_WEBSOCKET"]

    assert setting("nats://127.0.0.1:4222", {}) == "0"
    assert setting("wss://nats.example:443", {}) == "1"
    assert setting("nats://127.0.0.1:4222", {"MESHKIT_NATS_WEBSOCKET": "1"}) == "1"  # the user's choice wins


def test_fixed_port_comes_from_the_environment_first():
    svc = ServiceDef(name="gateway", module="m.main", port=8080)
    assert fixed_port(svc, {}) == (8080, "GATEWAY_PORT (or `port:` of gateway in the system file)")
    assert fixed_port(svc, {"GATEWAY_PORT": "9000"}) == (9000, "GATEWAY_PORT")
    assert fixed_port(ServiceDef(name="catalog", module="m.main"), {})[0] is None
    with pytest.raises(ConfigError, match="GATEWAY_PORT='x' is not a port"):
        fixed_port(svc, {"GATEWAY_PORT": "x"})


async def test_crashing_child_is_restarted_and_its_lines_are_tagged():
    out = io.StringIO()
    console = Console(out, color=False, tags=["flaky/1"])
    exits = []
    supervisor = Supervisor(console, RestartPolicy(initial=0.05, maximum=0.1),
                            on_exit=lambda child, code, up: exits.append(code))
    script = "import sys; print('hello'); print('oops', file=sys.stderr); sys.stdout.write('tail'); sys.exit(3)"
    child = supervisor.add(ChildSpec("flaky", "flaky-1", "flaky/1", [sys.executable, "-c", script], {}))
    supervisor.start()
    for _ in range(200):
        if len(exits) >= 2:
            break
        await asyncio.sleep(0.05)
    await supervisor.stop(2.0)
    assert exits[:2] == [3, 3] and child.starts >= 2
    lines = out.getvalue().splitlines()
    assert "flaky/1 │ hello" in lines and "flaky/1 │ oops" in lines and "flaky/1 │ tail" in lines
    assert any("flaky-1 exited with code 3" in line and "restarting in" in line for line in lines)


async def test_stop_terms_then_kills_a_child_that_ignores_sigterm():
    console = Console(io.StringIO(), color=False)
    supervisor = Supervisor(console)
    stubborn = ("import signal, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
                "print('ready', flush=True); time.sleep(60)")
    polite = "import time; print('ready', flush=True); time.sleep(60)"
    a = supervisor.add(ChildSpec("a", "a-1", "a/1", [sys.executable, "-c", polite], {}))
    b = supervisor.add(ChildSpec("b", "b-1", "b/1", [sys.executable, "-c", stubborn], {}))
    supervisor.start()
    for _ in range(100):
        if console.stream.getvalue().count("│ ready") == 2:
            break
        await asyncio.sleep(0.05)
    pids = [a.pid, b.pid]
    killed = await supervisor.stop(0.5)
    assert [c.spec.instance_id for c in killed] == ["b-1"]
    assert a.process.returncode == -15 and b.process.returncode == -9
    for pid in pids:
        assert not _alive(pid)


def _alive(pid: int) -> bool:
    import os

    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
