"""Log lines: one JSON object per line in production, plain text for people (CDS_LOG_FORMAT=text)."""

from __future__ import annotations

import logging

from pythonjsonlogger.json import JsonFormatter

FIELDS = "%(asctime)s %(levelname)s %(name)s %(message)s"


def configure_logging(log_format: str, level: int) -> None:
    """Log to stderr in the chosen format, unless the host (gunicorn, a test runner) configured logging."""
    root = logging.getLogger()
    if root.handlers:
        return
    handler = logging.StreamHandler()
    if log_format == "text":
        handler.setFormatter(logging.Formatter(FIELDS))
    else:
        handler.setFormatter(JsonFormatter(FIELDS, rename_fields={"levelname": "level", "asctime": "time"}))
    root.addHandler(handler)
    root.setLevel(level)
