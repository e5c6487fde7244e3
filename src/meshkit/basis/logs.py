"""JSON logs: one object per line on stderr, correlated by request and trace id.

:func:`configure_logging` installs one handler on the root logger whose
:class:`JsonFormatter` writes ``time, level, logger, message, service, instance,
request_id, trace_id`` plus any ``extra=`` fields and, for an exception, its
traceback. ``request_id`` and ``trace_id`` come from the request context bound by
the runtime's context middleware (:mod:`meshkit.basis.context`), so any log call
made while handling a request carries them without passing them around.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import IO, Any

import orjson

from meshkit.basis import context

#: Logger of the one-line-per-request access log.
ACCESS_LOGGER = "meshkit.access"

# Attributes every LogRecord has; anything else on a record came from ``extra=``.
_STANDARD = frozenset(
    vars(logging.LogRecord("", 0, "", 0, "", None, None)).keys() | {"message", "asctime", "taskName"}
)


class JsonFormatter(logging.Formatter):
    """Formats a record as one JSON object (no newline inside)."""

    def __init__(self, service: str = "", instance: str = "") -> None:
        super().__init__()
        self.service = service
        self.instance = instance

    def format(self, record: logging.LogRecord) -> str:
        ct = record.created
        out: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ct)) + f".{int(ct % 1 * 1000):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            "service": self.service,
            "instance": self.instance,
        }
        ctx = context.current()
        if ctx is not None:
            out["request_id"] = ctx.request_id
            out["trace_id"] = ctx.trace_id
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                out[key] = value
        if record.exc_info:
            out["exc_type"] = record.exc_info[0].__name__ if record.exc_info[0] else None
            out["traceback"] = self.formatException(record.exc_info)
        elif record.exc_text:
            out["traceback"] = record.exc_text
        if record.stack_info:
            out["stack"] = record.stack_info
        # default=str: a stray non-JSON extra (a Path, a UUID) must not lose the line.
        return orjson.dumps(out, default=str).decode()


class _MeshkitHandler(logging.StreamHandler):
    """Marks the handler we install, so configuring again replaces it instead of adding one."""


def configure_logging(
    level: str | int = "info",
    *,
    service: str = "",
    instance: str = "",
    stream: IO[str] | None = None,
) -> logging.Handler:
    """Send all logging to ``stream`` (stderr) as JSON lines at ``level``.

    Idempotent: a handler installed by an earlier call is replaced; handlers
    installed by others (e.g. pytest's capture) are left alone.
    """
    root = logging.getLogger()
    for h in list(root.handlers):
        if isinstance(h, _MeshkitHandler):
            root.removeHandler(h)
    handler = _MeshkitHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter(service=service, instance=instance))
    root.addHandler(handler)
    root.setLevel(_level(level))
    # Servers bring their own loggers and formats; ours carries the access log instead.
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "_granian", "granian", "granian.access"):
        lg = logging.getLogger(name)
        lg.handlers.clear()
        lg.propagate = True
    logging.getLogger("uvicorn.access").disabled = True
    logging.getLogger("_granian").setLevel(logging.WARNING)
    return handler


def _level(level: str | int) -> int:
    if isinstance(level, int):
        return level
    value = logging.getLevelName(level.upper())
    if not isinstance(value, int):
        from meshkit.basis.errors import ConfigError

        raise ConfigError(f"unknown log level {level!r}: use debug, info, warning, error or critical")
    return value
