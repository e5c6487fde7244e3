"""JSON logs: one object per line on stderr, correlated by request and trace id.

:func:`configure_logging` installs one handler on the root logger whose
:class:`JsonFormatter` writes ``time, level, logger, message, service, instance,
request_id, trace_id`` plus any ``extra=`` fields and, for an exception, its
traceback. ``request_id`` and ``trace_id`` come from the request context bound by
the runtime's context middleware (:mod:`meshkit.basis.context`), so any log call
made while handling a request carries them without passing them around.
"""

from __future__ import annotations

import atexit
import logging
import sys
import threading
import time
from contextvars import ContextVar
from typing import IO, Any

import orjson

from meshkit.basis import context

#: Logger of the one-line-per-request access log.
ACCESS_LOGGER = "meshkit.access"

# Attributes every LogRecord has; anything else on a record came from ``extra=``.
_STANDARD = frozenset(
    vars(logging.LogRecord("", 0, "", 0, "", None, None)).keys() | {"message", "asctime", "taskName"}
)


_labels: ContextVar[tuple[str, str] | None] = ContextVar("meshkit_log_labels", default=None)


def bind_labels(service: str, instance: str) -> None:
    """Label the log lines of this context, and of the tasks it creates from now on,
    with ``service`` and ``instance`` (several services in one process: tests)."""
    _labels.set((service, instance))


class JsonFormatter(logging.Formatter):
    """Formats a record as one JSON object (no newline inside)."""

    def __init__(self, service: str = "", instance: str = "") -> None:
        super().__init__()
        self.service = service
        self.instance = instance
        self._second = -1
        self._stamp = ""

    def format(self, record: logging.LogRecord) -> str:
        ct = record.created
        second = int(ct)
        if second != self._second:  # strftime once per second, not once per line
            self._second, self._stamp = second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        out: dict[str, Any] = {
            "time": f"{self._stamp}.{int((ct - second) * 1000):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        labels = _labels.get()
        out["service"], out["instance"] = labels if labels is not None else (self.service, self.instance)
        ctx = context.current()
        if ctx is not None:
            out["request_id"] = ctx.request_id
            out["trace_id"] = ctx.trace_id
        for key in record.__dict__.keys() - _STANDARD:
            if not key.startswith("_"):
                out[key] = record.__dict__[key]
        if record.exc_info:
            out["exc_type"] = record.exc_info[0].__name__ if record.exc_info[0] else None
            out["traceback"] = self.formatException(record.exc_info)
        elif record.exc_text:
            out["traceback"] = record.exc_text
        if record.stack_info:
            out["stack"] = record.stack_info
        # default=str: a stray non-JSON extra (a Path, a UUID) must not lose the line.
        return orjson.dumps(out, default=str).decode()


class BufferedLineHandler(logging.Handler):
    """Writes formatted lines to a stream in batches instead of one write per line.

    A write (a system call, a point where a busy machine preempts us) per access
    line cost more than formatting the line did; here lines collect in memory and
    go out together every ``interval`` seconds, at once for a warning or worse,
    when ``max_bytes`` are pending, and at exit. A SIGKILL can lose the last
    ``interval`` of info lines; never an error line.
    """

    def __init__(self, stream: IO[str] | None = None, interval: float = 0.2, max_bytes: int = 64 * 1024) -> None:
        super().__init__()
        #: ``None``: whatever ``sys.stderr`` is when the batch is written.
        self.stream = stream
        self.interval = interval
        self.max_bytes = max_bytes
        self._pending: list[str] = []
        self._size = 0
        self._wake = threading.Event()
        self._closed = False
        self._thread = threading.Thread(target=self._flusher, name="meshkit-log-flush", daemon=True)
        self._thread.start()
        atexit.register(self.flush)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record)
        except Exception:
            self.handleError(record)
            return
        with self.lock:
            self._pending.append(line)
            self._size += len(line) + 1
            urgent = record.levelno >= logging.WARNING or self._size >= self.max_bytes
        if urgent:
            self.flush()

    def flush(self) -> None:
        with self.lock:
            if not self._pending:
                return
            data = "\n".join(self._pending) + "\n"
            self._pending.clear()
            self._size = 0
            try:
                stream = self.stream or sys.stderr
                stream.write(data)
                stream.flush()
            except (OSError, ValueError):  # stream closed under us (interpreter exit, closed pipe)
                pass

    def _flusher(self) -> None:
        while not self._closed:
            self._wake.wait(self.interval)
            self.flush()

    def close(self) -> None:
        self._closed = True
        self._wake.set()
        self.flush()
        atexit.unregister(self.flush)
        super().close()


def configure_logging(
    level: str | int = "info",
    *,
    service: str = "",
    instance: str = "",
    stream: IO[str] | None = None,
    flush_interval: float = 0.2,
) -> logging.Handler:
    """Send all logging to ``stream`` (stderr) as JSON lines at ``level``.

    Idempotent: a handler installed by an earlier call is replaced; handlers
    installed by others (e.g. pytest's capture) are left alone. Lines are written
    in batches every ``flush_interval`` seconds (warnings and errors at once).
    """
    root = logging.getLogger()
    for h in list(root.handlers):
        if isinstance(h, BufferedLineHandler):
            root.removeHandler(h)
            h.close()
    handler = BufferedLineHandler(stream, interval=flush_interval)
    handler.setFormatter(JsonFormatter(service=service, instance=instance))
    root.addHandler(handler)
    root.setLevel(_level(level))
    # Our lines carry no thread or process names: don't pay for looking them up per record.
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    # Servers bring their own loggers and formats; ours carries the access log instead.
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "_granian", "granian", "granian.access"):
        lg = logging.getLogger(name)
        lg.handlers.clear()
        lg.propagate = True
    logging.getLogger("uvicorn.access").disabled = True
    logging.getLogger("_granian").setLevel(logging.WARNING)
    return handler


def flush() -> None:
    """Write out the lines the JSON handler is holding (end of a service's life, tests)."""
    for h in logging.getLogger().handlers:
        if isinstance(h, BufferedLineHandler):
            h.flush()


def _level(level: str | int) -> int:
    if isinstance(level, int):
        return level
    value = logging.getLevelName(level.upper())
    if not isinstance(value, int):
        from meshkit.basis.errors import ConfigError

        raise ConfigError(f"unknown log level {level!r}: use debug, info, warning, error or critical")
    return value
