"""Traffic splitting by instance version: canary shares and blue-green switches.

``version`` on a route's upstream sends everything to that version (blue-green:
change one line, reload, done). ``canary`` sends ``percent`` % to one version
and the rest to every other version; with ``sticky`` the choice is a hash of
the user (or client address) so one caller stays on one side.
"""

from __future__ import annotations

import random
from zlib import crc32

from meshkit.gateway.config import Upstream


def in_canary(percent: float, sticky_key: str | None, rand=random.random) -> bool:
    """Whether one request goes to the canary side, for a share of ``percent`` %."""
    if percent <= 0:
        return False
    if percent >= 100:
        return True
    if sticky_key is not None:
        # crc32 spreads short keys evenly enough over 10,000 buckets (0.01 % steps).
        return crc32(sticky_key.encode()) % 10_000 < percent * 100
    return rand() * 100 < percent


def choose_subset(up: Upstream, subject: str | None, client: str) -> str | None:
    """The version subset key for one request: ``None`` (all), ``"v"`` (only v) or ``"!v"`` (all but v)."""
    if up.version is not None:
        return up.version
    c = up.canary
    if c is None:
        return None
    key = None
    if c.sticky == "user":
        key = subject or client
    elif c.sticky == "client":
        key = client
    return c.version if in_canary(c.percent, key) else "!" + c.version
