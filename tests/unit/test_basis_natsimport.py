"""meshkit.basis with MESHKIT_NATS_WEBSOCKET=0 imports nats-py without aiohttp, and aiohttp still imports later.

Each case runs in a fresh interpreter: what is imported is the point.
"""

from __future__ import annotations

import os
import subprocess
import sys

PROBE = """
import sys
import meshkit.basis
import nats.aio.transport as t
print(t.aiohttp is None, "aiohttp" in sys.modules)
import aiohttp  # the gateway imports it later for an https:// JWKS: must still work
print(aiohttp.ClientSession is not None)
"""


def probe(**env: str) -> list[str]:
    clean = {k: v for k, v in os.environ.items() if k != "MESHKIT_NATS_WEBSOCKET"}
    out = subprocess.run([sys.executable, "-c", PROBE], env={**clean, **env}, capture_output=True, text=True,
                         timeout=60, check=True)
    return out.stdout.split()


def test_skipped_when_asked_and_aiohttp_still_importable_afterwards():
    assert probe(MESHKIT_NATS_WEBSOCKET="0") == ["True", "False", "True"]


def test_left_alone_by_default():
    assert probe() == ["False", "True", "True"]
