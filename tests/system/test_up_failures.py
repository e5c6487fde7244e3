"""`meshkit up` facing a service that cannot start: it says which and why, and leaves nothing behind."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time

import pytest

from meshkit.basis.natsd import free_port

pytestmark = [pytest.mark.system, pytest.mark.timeout(60)]


def test_a_service_crashing_while_starting_stops_up_with_exit_1(tmp_path):
    (tmp_path / "broken_service.py").write_text(
        "import sys\nprint('cannot start: CATALOG_TOKEN is not set', file=sys.stderr)\nsys.exit(3)\n"
    )
    (tmp_path / "system.yaml").write_text("services:\n  - {name: broken, module: broken_service}\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("MESHKIT_")}
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "meshkit.cli.main", "up", "--system", "system.yaml",
         "--nats-port", str(free_port()), "--no-color"],
        cwd=tmp_path, capture_output=True, text=True, timeout=45, env=env,
    )
    took = time.monotonic() - started
    out = proc.stdout
    assert proc.returncode == 1, out + proc.stderr
    # the child's own words, behind its tag, each time it tried
    assert out.count("broken/1 │ cannot start: CATALOG_TOKEN is not set") == 3
    assert "broken-1 exited with code 3" in out and "restarting in 0.5s" in out and "restarting in 1.0s" in out
    assert "broken-1 exited 3 times while starting (last: code 3)" in out and "system.yaml" in out
    assert "ready in" not in out and "nats stopped" in out
    assert took < 20
    pids = [int(m) for m in re.findall(r"^meshkit\s+│ .*\bpid (\d+)", out, re.M)]
    assert len(pids) == 4  # nats and three tries
    assert not [p for p in pids if os.path.exists(f"/proc/{p}")]
