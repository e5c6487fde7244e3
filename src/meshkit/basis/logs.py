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
from itertools import islice
from typing import IO, Any

import orjson

from meshkit.basis import context

#: Logger of the one-line-per-request access log.
ACCESS_LOGGER = "meshkit.access"

# Attributes every LogRecord has; anything else on a record came from ``extra=``.
_N_STANDARD = len(vars(logging.LogRecord("", 0, "", 0, "", None, None)))
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

    def _head(self, created: float, level: str, name: str, message: str) -> dict[str, Any]:
        second = int(created)
        if second != self._second:  # strftime once per second, not once per line
            self._second, self._stamp = second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        labels = _labels.get()
        service, instance = labels if labels is not None else (self.service, self.instance)
        out: dict[str, Any] = {
            "time": f"{self._stamp}.{int((created - second) * 1000):03d}Z",
            "level": level,
            "logger": name,
            "message": message,
            "service": service,
            "instance": instance,
        }
        ctx = context.current()
        if ctx is not None:
            out["request_id"] = ctx.request_id
            out["trace_id"] = ctx.trace_id
        return out

    def format(self, record: logging.LogRecord) -> str:
        out = self._head(record.created, record.levelname.lower(), record.name, record.getMessage())
        # ``extra=`` fields are set after LogRecord.__init__, so they come last in the
        # record's (ordered) __dict__: skip the standard ones without testing each.
        for key, value in islice(record.__dict__.items(), _N_STANDARD, None):
            if key not in _STANDARD and key[0] != "_":
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

    def format_fields(self, level: int, name: str, message: str, fields: dict[str, Any]) -> str:
        """The line :meth:`format` would make for a record with ``extra=fields``."""
        out = self._head(time.time(), _LEVEL_NAMES.get(level) or logging.getLevelName(level).lower(), name, message)
        out.update(fields)
        return orjson.dumps(out, default=str).decode()


_LEVEL_NAMES = {lvl: logging.getLevelName(lvl).lower() for lvl in (10, 20, 30, 40, 50)}


def log_fields(logger: logging.Logger, level: int, message: str, fields: dict[str, Any]) -> None:
    """Log ``message`` with ``fields`` as one line (the access log's hot path).

    When the line could only reach our JSON handler (no other handler or filter
    on the way, the usual case in a service), it is formatted and queued there
    directly: no LogRecord, no handler chain, a third of the cost. Otherwise
    (pytest's capture, a handler someone added) it goes through ``logging``.
    """
    if not logger.isEnabledFor(level):
        return
    handler = _sole_json_handler(logger, level)
    if handler is None:
        logger.handle(logger.makeRecord(logger.name, level, "", 0, message, None, None, extra=fields))
        return
    handler.append(handler.formatter.format_fields(level, logger.name, message, fields), level >= logging.WARNING)


def _sole_json_handler(logger: logging.Logger, level: int) -> BufferedLineHandler | None:
    lg: logging.Logger | None = logger
    while lg is not None:
        if lg.filters:
            return None
        if lg.handlers:
            if lg.parent is not None or len(lg.handlers) != 1:
                return None
            h = lg.handlers[0]
            ok = isinstance(h, BufferedLineHandler) and not h.filters and level >= h.level
            return h if ok and isinstance(h.formatter, JsonFormatter) else None
        if not lg.propagate:
            return None
        lg = lg.parent
    return None


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
        self.append(line, record.levelno >= logging.WARNING)

    def append(self, line: str, urgent: bool = False) -> None:
        """Queue one formatted line; write the batch now if ``urgent`` or it is large."""
        with self.lock:
            self._pending.append(line)
            self._size += len(line) + 1
            urgent = urgent or self._size >= self.max_bytes
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
