"""The outbox fault scenario with a bigger N (``make chaos``)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "integration"))
from test_outbox_faults import fault_db, run_fault_scenario

pytestmark = pytest.mark.chaos
__all__ = ["fault_db"]


@pytest.mark.timeout(600)
async def test_exactly_n_effects_under_faults_big(fault_db, tmp_path):
    await run_fault_scenario(fault_db, tmp_path / "nats", n=int(os.environ.get("MESHKIT_CHAOS_EVENTS", "3000")))
