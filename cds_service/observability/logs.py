"""Log lines: one JSON object per line in production, plain text for people (CDS_LOG_FORMAT=text).

A log line says where and what kind, never a value a client sent (tokens, patient data, comments):
the callers log only their own vocabulary, and an exception is written as its stack (files, lines,
functions) and the types of the exceptions, never their messages, which may quote values (a
database's error, a KeyError's key). For a database error the failed SQL statement (with its
parameters hidden) and SQLSTATE are added: they say which statement failed, not with what.
"""

from __future__ import annotations

import logging
import os
import re
import time
import traceback
from types import TracebackType
from typing import Any, TextIO

import orjson

FIELDS = "%(asctime)s %(levelname)s %(name)s %(message)s"
# Attributes every LogRecord has: anything else on a record came through `extra=` and is a field.
STANDARD_ATTRIBUTES = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}
ExcInfo = tuple[type[BaseException], BaseException, TracebackType | None] | tuple[None, None, None]


# Path segments that are credentials: a Prior Notification form link's token opens a pre-filled form and files
# a PN for 30 days. A logged path shows the route there instead (nginx's access log does the same).
CREDENTIAL_IN_PATH = re.compile(r"^(/prior-notification/form/)[^/?]+")


CREDENTIAL_IN_LINE = re.compile(r"(/prior-notification/form/)[^/?\s\"]+")


def loggable_path(path: str) -> str:
    """A request path as a log may hold it: every credential it carries masked."""
    return CREDENTIAL_IN_PATH.sub(r"\1<token>", path)


class MaskedRequestLines(logging.Filter):
    """werkzeug's development server (`flask run`, the browser tests) logs each request line, a form link's
    token and all: the line is logged with the token masked."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(
                CREDENTIAL_IN_LINE.sub(r"\1<token>", a) if isinstance(a, str) else a for a in record.args
            )
        return True


def mask_request_lines() -> None:
    """Once per process: the filter on werkzeug's logger, whoever configured the handlers."""
    werkzeug = logging.getLogger("werkzeug")
    if not any(isinstance(f, MaskedRequestLines) for f in werkzeug.filters):
        werkzeug.addFilter(MaskedRequestLines())


def exception_chain(error: BaseException) -> list[BaseException]:
    """The exception and those it came from, oldest first."""
    chain: list[BaseException] = []
    current: BaseException | None = error
    while current is not None and current not in chain:
        chain.append(current)
        current = current.__cause__ or (None if current.__suppress_context__ else current.__context__)
    return chain[::-1]


def describe_exception(error: BaseException) -> str:
    kind = type(error)
    name = kind.__qualname__ if kind.__module__ == "builtins" else f"{kind.__module__}.{kind.__qualname__}"
    details = []
    statement = getattr(error, "statement", None)  # SQLAlchemy StatementError: SQL text, values as placeholders
    if isinstance(statement, str):
        details.append(f"statement: {' '.join(statement.split())[:500]}")
    original = getattr(error, "orig", None)
    if isinstance(original, BaseException):
        details.append(f"driver error: {type(original).__module__}.{type(original).__qualname__}")
        sqlstate = getattr(original, "sqlstate", None) or getattr(original, "pgcode", None)
        if isinstance(sqlstate, str):
            details.append(f"SQLSTATE {sqlstate}")
    return name + "".join(f"\n  {detail}" for detail in details)


def format_exception_safely(exc_info: ExcInfo) -> str:
    """A traceback as Python prints it, each exception's message left out."""
    error = exc_info[1]
    if error is None:
        return ""
    parts = []
    for index, link in enumerate(exception_chain(error)):
        if index:
            parts.append("\nThe above exception led to this one:\n")
        parts.append("Traceback (most recent call last):\n")
        parts.extend(traceback.format_tb(link.__traceback__))
        parts.append(describe_exception(link) + " (message not logged)")
    return "".join(parts)


class TextFormatter(logging.Formatter):
    """For people: the message, then each field of the line as key=value (a hook call's service, status…)."""

    def __init__(self) -> None:
        super().__init__(FIELDS)

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        fields = {key: value for key, value in vars(record).items() if key not in STANDARD_ATTRIBUTES}
        fields.pop("event", None)
        if not fields:
            return line
        head, newline, rest = line.partition("\n")
        pairs = " ".join(f"{key}={render(value)}" for key, value in fields.items())
        return f"{head} {pairs}{newline}{rest}"

    def formatException(self, ei: Any) -> str:
        return format_exception_safely(ei)


class JsonFormatter(logging.Formatter):
    """For machines: one JSON object per line, time, level, logger and message first, then the line's fields.

    Built as one dict and encoded by orjson: a hook call's line costs a few microseconds (python-json-logger,
    used before, took about 30 µs of every call; BENCHMARKS.md, "The serving stack").
    """

    def __init__(self) -> None:
        super().__init__()
        self._second: tuple[int, str] = (-1, "")  # the last second formatted, and its text

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        """Formatter's own text ("2026-12-05 08:50:12,710"), the date and time worked out once a second."""
        second = int(record.created)
        if second != self._second[0]:
            self._second = (second, time.strftime(self.default_time_format, self.converter(second)))
        return f"{self._second[1]},{int(record.msecs):03d}"

    def format(self, record: logging.LogRecord) -> str:
        line = {
            "time": self.formatTime(record),
            "level": record.levelname,
            "name": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in STANDARD_ATTRIBUTES:
                line[key] = value
        if record.exc_info:
            line["exc_info"] = self.formatException(record.exc_info)
        if record.stack_info:
            line["stack_info"] = self.formatStack(record.stack_info)
        return orjson.dumps(line, default=str).decode()

    def formatException(self, ei: Any) -> str:
        return format_exception_safely(ei)


# Lines up to this size reach a pipe whole in one write(2) (POSIX PIPE_BUF), however many threads write.
ATOMIC_WRITE_BYTES = 4096


class LineHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """A StreamHandler that writes each line with one write(2) to the stream's file descriptor, without taking
    the handler's lock: the kernel keeps a line of up to ATOMIC_WRITE_BYTES whole. With the lock, a thread
    writing a hook call's line let go of the GIL holding it, and the worker's other threads queued behind it
    (BENCHMARKS.md, "The serving stack", round 4). A longer line (a traceback), or a stream without a file
    descriptor (a test's StringIO), is written as StreamHandler writes it, under the lock."""

    def __init__(self, stream: TextIO | None = None) -> None:
        super().__init__(stream)
        self.fd = file_descriptor(self.stream)

    def setStream(self, stream: TextIO) -> TextIO | None:
        old = super().setStream(stream)
        self.fd = file_descriptor(self.stream)
        return old

    def handle(self, record: logging.LogRecord) -> bool:
        if self.fd is None:
            return super().handle(record)
        passed = self.filter(record)
        if passed:
            self.emit(record)
        return passed

    def emit(self, record: logging.LogRecord) -> None:
        if self.fd is None:
            super().emit(record)
            return
        try:
            line = (self.format(record) + self.terminator).encode("utf-8", "backslashreplace")
            if len(line) <= ATOMIC_WRITE_BYTES:
                os.write(self.fd, line)
                return
            with self.lock:  # type: ignore[union-attr]  # Handler.createLock made it
                view = memoryview(line)
                while view:
                    view = view[os.write(self.fd, view) :]
        except Exception:
            self.handleError(record)


def file_descriptor(stream: Any) -> int | None:
    try:
        return int(stream.fileno())
    except (AttributeError, OSError, ValueError):
        return None


def json_formatter() -> JsonFormatter:
    """The production line format (the HTTP server's own lines use it too)."""
    return JsonFormatter()


def render(value: Any) -> str:
    if isinstance(value, dict):
        return ",".join(f"{k}:{v}" for k, v in value.items()) or "-"
    if isinstance(value, list | tuple | set | frozenset):
        return ",".join(str(v) for v in value) or "-"
    return str(value)


def skip_unused_record_fields() -> None:
    """The logging HOWTO's "Optimization" switches: no line of ours shows the caller's file and line, the
    process or its multiprocessing name, so a record does not look them up (about 2 µs of the hook call's
    line). The thread stays: it tells apart the lines of concurrent calls."""
    logging._srcfile = None  # documented in the HOWTO
    logging.logProcesses = False
    logging.logMultiprocessing = False


def configure_logging(log_format: str, level: int) -> None:
    """Log to stderr in the chosen format, unless the host (a test runner) configured logging."""
    mask_request_lines()
    skip_unused_record_fields()
    root = logging.getLogger()
    if root.handlers:
        return
    handler = LineHandler()
    if log_format == "text":
        handler.setFormatter(TextFormatter())
    else:
        handler.setFormatter(json_formatter())
    root.addHandler(handler)
    root.setLevel(level)
