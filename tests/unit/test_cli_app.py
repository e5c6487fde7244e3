"""The command line itself: help that lists and explains everything, versions, clear refusals."""

import socket
import subprocess
import sys

import pytest

from meshkit import __version__
from meshkit.cli.app import build_parser, run

SUBCOMMANDS = ("up", "services", "run", "dlq", "version")


def help_of(*argv: str, capsys) -> str:
    with pytest.raises(SystemExit) as info:
        run([*argv, "--help"])
    assert info.value.code == 0
    return capsys.readouterr().out


def test_main_help_lists_every_subcommand_with_examples(capsys):
    text = help_of(capsys=capsys)
    subparsers = next(a for a in build_parser()._actions if a.dest == "command")
    assert set(subparsers.choices) == set(SUBCOMMANDS)
    for name in SUBCOMMANDS:
        assert f"\n    {name} " in text
    assert "examples:" in text and "MESHKIT_NATS_URL" in text and "MESHKIT_NATS_PORT" in text


@pytest.mark.parametrize("name", SUBCOMMANDS)
def test_each_subcommand_help_has_an_example(name, capsys):
    text = help_of(name, capsys=capsys)
    assert f"usage: meshkit {name}" in text
    assert "example" in text and f"meshkit {name}" in text.split("example", 1)[1]


def test_up_help_documents_its_options_and_exit_codes(capsys):
    text = help_of("up", capsys=capsys)
    for option in ("--system FILE", "--nats-port N", "--data-dir DIR", "--no-color"):
        assert option in text
    assert "4223" in text and "ready" in text and "exit codes" in text


def test_no_command_prints_help_and_fails(capsys):
    assert run([]) == 2
    assert "commands:" in capsys.readouterr().out


def test_version(capsys):
    assert run(["version"]) == 0
    assert capsys.readouterr().out.startswith(f"meshkit {__version__} (Python ")


def test_bad_port_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as info:
        run(["up", "--nats-port", "99999"])
    assert info.value.code == 2
    assert "99999 is not a port" in capsys.readouterr().err


def test_services_with_nothing_running_says_how_to_start(monkeypatch, capsys):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("MESHKIT_NATS_URL", f"nats://127.0.0.1:{port}")
    assert run(["services"]) == 1
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and f"nats://127.0.0.1:{port}" in err and "make up" in err and "meshkit up" in err


def test_run_unknown_target_names_the_choices(capsys):
    assert run(["run", "no.such.module_xyz"]) == 2
    err = capsys.readouterr().err
    assert "no.such.module_xyz" in err and "catalog" in err


def test_up_with_nats_port_taken_is_one_clear_line(tmp_path):
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        proc = subprocess.run(
            [sys.executable, "-m", "meshkit.cli.main", "up", "--nats-port", str(port), "--no-color"],
            cwd=tmp_path, capture_output=True, text=True, timeout=30,
            env={**_clean_env(), "MESHKIT_DATA_DIR": str(tmp_path / "data")},
        )
    assert proc.returncode == 2, proc.stdout + proc.stderr
    problems = [line for line in (proc.stdout + proc.stderr).splitlines() if "in use" in line]
    assert len(problems) == 1
    assert f"port {port}" in problems[0] and "MESHKIT_NATS_PORT" in problems[0] and "--nats-port" in problems[0]
    assert not (tmp_path / ".meshkit").exists()


def _clean_env() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if not k.startswith("MESHKIT_")}


def test_up_with_a_module_that_does_not_exist_stops_before_starting_anything(tmp_path):
    (tmp_path / "system.yaml").write_text("services:\n  - {name: ghost, module: no_such_module_xyz.main}\n")
    proc = subprocess.run(
        [sys.executable, "-m", "meshkit.cli.main", "up", "--system", "system.yaml", "--no-color"],
        cwd=tmp_path, capture_output=True, text=True, timeout=30, env=_clean_env(),
    )
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "no_such_module_xyz.main" in proc.stdout and "ghost" in proc.stdout and "system.yaml" in proc.stdout
    assert "starting nats" not in proc.stdout and not (tmp_path / ".meshkit").exists()


def test_up_with_a_fixed_service_port_taken_names_the_setting(tmp_path):
    (tmp_path / "system.yaml").write_text(
        "services:\n  - {name: catalog, module: meshkit.services.catalog.main, port: PORT}\n"
    )
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        (tmp_path / "system.yaml").write_text((tmp_path / "system.yaml").read_text().replace("PORT", str(port)))
        proc = subprocess.run(
            [sys.executable, "-m", "meshkit.cli.main", "up", "--system", "system.yaml", "--no-color"],
            cwd=tmp_path, capture_output=True, text=True, timeout=30, env=_clean_env(),
        )
    assert proc.returncode == 2, proc.stdout + proc.stderr
    problems = [line for line in proc.stdout.splitlines() if "in use" in line]
    assert len(problems) == 1 and f"port {port} for catalog" in problems[0] and "CATALOG_PORT" in problems[0]
    assert "starting nats" not in proc.stdout
