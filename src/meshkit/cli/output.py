"""What the ``meshkit`` command prints: colours, per-instance tags, tables, ages.

Colour is used only when it helps: on a terminal, unless ``--no-color`` or
``NO_COLOR`` says otherwise; ``FORCE_COLOR`` (or ``MESHKIT_COLOR=always``)
turns it on for pipes, e.g. under a log viewer that understands ANSI.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import IO, Any

import orjson

RESET = "\x1b[0m"
BOLD = "\x1b[1m"
DIM = "\x1b[2m"
RED = "\x1b[31m"
GREEN = "\x1b[32m"
YELLOW = "\x1b[33m"
#: Tag colours, given out in turn: cyan, magenta, blue, yellow, green, then the bright ones.
PALETTE = ("36", "35", "34", "33", "32", "96", "95", "94", "93", "92")


def use_color(stream: IO[str] | None = None, *, no_color: bool = False,
              environ: Mapping[str, str] | None = None) -> bool:
    """Whether to colour what goes to ``stream``.

    ``--no-color`` and ``NO_COLOR`` win; then ``FORCE_COLOR`` / ``MESHKIT_COLOR``
    (``always``/``never``); otherwise colour only on a terminal.
    """
    env = os.environ if environ is None else environ
    if no_color or env.get("NO_COLOR"):
        return False
    choice = env.get("MESHKIT_COLOR", "").lower()
    if choice in ("never", "0", "no", "false"):
        return False
    if choice in ("always", "1", "yes", "true") or env.get("FORCE_COLOR"):
        return True
    stream = sys.stdout if stream is None else stream
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # closed or fake streams
        return False


def paint(text: str, code: str, color: bool) -> str:
    """``text`` in ANSI colour ``code`` (``"36"`` or an escape like :data:`RED`) when ``color``."""
    if not color:
        return text
    esc = code if code.startswith("\x1b") else f"\x1b[{code}m"
    return f"{esc}{text}{RESET}"


def tag_text(service: str, instance_id: str) -> str:
    """``catalog/1`` for instance ``catalog-1`` of ``catalog``; the full id otherwise."""
    prefix = f"{service}-"
    short = instance_id[len(prefix):] if instance_id.startswith(prefix) else instance_id
    return f"{service}/{short}"


def format_tag(text: str, width: int, code: str, color: bool) -> str:
    """A tag padded to ``width`` and followed by a bar: ``catalog/1  │ ``."""
    return paint(f"{text:<{width}} │", code, color) + " "


class Tagger:
    """Gives each tag a stable colour and pads all tags to the same width."""

    def __init__(self, tags: Iterable[str], *, color: bool) -> None:
        names = list(tags)
        self.color = color
        self.width = max((len(t) for t in names), default=0)
        self._codes = {t: PALETTE[i % len(PALETTE)] for i, t in enumerate(names)}

    def prefix(self, tag: str) -> str:
        """The coloured, padded prefix for lines of ``tag``."""
        self.width = max(self.width, len(tag))
        code = self._codes.setdefault(tag, PALETTE[len(self._codes) % len(PALETTE)])
        return format_tag(tag, self.width, code, self.color)

    def line(self, tag: str, text: str) -> str:
        return self.prefix(tag) + text


#: Fields a readable log line leaves out: shown elsewhere (tag, time) or too long to read.
_LOG_HIDDEN = ("time", "level", "logger", "message", "service", "instance", "trace_id", "span_id",
               "traceback", "stack", "exc_type")
_LEVEL_COLOURS = {"warning": YELLOW, "error": RED, "critical": BOLD + RED, "debug": DIM}


def render_log(text: str, color: bool) -> str:
    """A JSON log line of a service as one readable line (plus its traceback, if any).

    ``{"time": …, "level": "info", "message": "GET /readyz 200", "status": 200, …}``
    becomes ``12:00:01.250 info  GET /readyz 200  status=200``; anything that is
    not such a JSON object comes back unchanged.
    """
    if not text.startswith("{"):
        return text
    try:
        record = orjson.loads(text)
    except orjson.JSONDecodeError:
        return text
    if not isinstance(record, dict) or "message" not in record:
        return text
    level = str(record.get("level", "info"))
    shown_level = f"{level:<5}"
    if level in _LEVEL_COLOURS:
        shown_level = paint(shown_level, _LEVEL_COLOURS[level], color)
    parts = [_local_time(str(record.get("time", ""))), shown_level, str(record["message"])]
    extras = " ".join(f"{k}={v}" for k, v in record.items() if k not in _LOG_HIDDEN)
    if extras:
        parts.append(paint(extras, DIM, color))
    line = " ".join(p for p in parts if p)
    trace = record.get("traceback") or record.get("stack")
    return f"{line}\n{trace}".rstrip() if trace else line


def _local_time(stamp: str) -> str:
    try:
        return datetime.fromisoformat(stamp).astimezone().strftime("%H:%M:%S.%f")[:-3]
    except ValueError:
        return stamp


class Console:
    """Writes the supervisor's own notes and the children's lines to one stream.

    Everything runs on one event loop, so a line is written whole; we flush per
    line so ``meshkit up | tee`` and the tests see output as it happens.
    """

    SELF = "meshkit"

    def __init__(self, stream: IO[str] | None = None, *, color: bool = False,
                 tags: Iterable[str] = (), readable_logs: bool = False) -> None:
        self.stream = sys.stdout if stream is None else stream
        self.color = color
        #: Render the children's JSON log lines readably (see :func:`render_log`).
        self.readable_logs = readable_logs
        self.tagger = Tagger([self.SELF, *tags], color=color)

    def child(self, tag: str, text: str) -> None:
        """One line a child printed, behind its tag (each line, if it became several)."""
        if self.readable_logs:
            text = render_log(text, self.color)
        prefix = self.tagger.prefix(tag)
        self._write("\n".join(prefix + part for part in text.split("\n")))

    def note(self, text: str) -> None:
        """One line from ``meshkit up`` itself."""
        self._write(self.tagger.line(self.SELF, text))

    def warn(self, text: str) -> None:
        self._write(self.tagger.line(self.SELF, paint(text, YELLOW, self.color)))

    def error(self, text: str) -> None:
        self._write(self.tagger.line(self.SELF, paint(text, RED, self.color)))

    def good(self, text: str) -> None:
        self._write(self.tagger.line(self.SELF, paint(text, BOLD + GREEN, self.color)))

    def _write(self, line: str) -> None:
        try:
            self.stream.write(line + "\n")
            self.stream.flush()
        except (BrokenPipeError, ValueError):  # `meshkit up | head`: the reader left; keep supervising
            pass


def format_age(seconds: float) -> str:
    """A short age: ``42s``, ``3m12s``, ``2h05m``, ``4d03h``."""
    s = max(0, int(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


def format_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str],
                 headers: Mapping[str, str] | None = None) -> str:
    """Rows as a plain, left-aligned text table with a header line; numbers align right."""
    heads = [(headers or {}).get(c, c.upper().replace("_", " ")) for c in columns]
    cells = [["" if r.get(c) is None else str(r.get(c)) for c in columns] for r in rows]
    widths = [max([len(h)] + [len(row[i]) for row in cells]) for i, h in enumerate(heads)]
    numeric = [bool(rows) and all(isinstance(r.get(c), int | float) for r in rows) for c in columns]

    def fmt(values: Sequence[str]) -> str:
        out = [v.rjust(w) if num else v.ljust(w) for v, w, num in zip(values, widths, numeric, strict=True)]
        return "  ".join(out).rstrip()

    return "\n".join([fmt(heads), *(fmt(row) for row in cells)])
