"""Child processes that do not outlive their parent.

``die_with_parent`` is a ``preexec_fn``: on Linux the child asks the kernel for
SIGTERM when its parent dies, even by SIGKILL, so a killed ``meshkit up`` (or a
killed test run) never leaves nats-server or a service behind holding its port.
Elsewhere it does nothing; callers stop their children themselves.
"""

from __future__ import annotations

import signal
import sys
from collections.abc import Callable


def _load_prctl() -> Callable[..., int] | None:
    # Loaded in the parent: the child, between fork and exec, only makes the call.
    if sys.platform != "linux":
        return None
    try:
        import ctypes

        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None


_PRCTL = _load_prctl()
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    if _PRCTL is not None:
        _PRCTL(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)


#: ``preexec_fn`` for ``subprocess.Popen`` (None where the platform has no such call).
die_with_parent: Callable[[], None] | None = _die_with_parent if _PRCTL is not None else None
