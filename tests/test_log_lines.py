"""The production log handler: one JSON line per record, whole, whatever the threads and however long the line."""

from __future__ import annotations

import io
import json
import logging
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from cds_service.observability.logs import ATOMIC_WRITE_BYTES, LineHandler, json_formatter


@pytest.fixture
def pipe_logger(tmp_path: Path) -> Iterator[tuple[logging.Logger, Path]]:
    """A logger whose LineHandler writes to a pipe, drained into a file by a reader thread (as a container
    runtime reads a worker's stderr)."""
    read_end, write_end = os.pipe()
    out = tmp_path / "lines.txt"

    def drain() -> None:
        with os.fdopen(read_end, "rb") as pipe, out.open("wb") as sink:
            while chunk := pipe.read1(65536):
                sink.write(chunk)

    reader = threading.Thread(target=drain)
    reader.start()
    stream = os.fdopen(write_end, "w")
    handler = LineHandler(stream)
    handler.setFormatter(json_formatter())
    logger = logging.getLogger(f"test-lines-{id(out)}")
    logger.propagate = False
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield logger, out
    finally:
        logger.removeHandler(handler)
        stream.close()
        reader.join()


def test_lines_from_many_threads_arrive_whole_and_once(pipe_logger: tuple[logging.Logger, Path]) -> None:
    logger, out = pipe_logger

    def log_many(thread: int) -> None:
        for index in range(500):
            logger.info("hook call", extra={"service": "lbp-referral-select", "thread_no": thread, "index": index})

    threads = [threading.Thread(target=log_many, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    logger.handlers[0].stream.close()  # type: ignore[attr-defined]
    lines = wait_for_lines(out, 3000)
    seen = {(line["thread_no"], line["index"]) for line in map(json.loads, lines)}
    assert seen == {(thread, index) for thread in range(6) for index in range(500)}


def test_a_line_longer_than_one_atomic_write_arrives_whole(pipe_logger: tuple[logging.Logger, Path]) -> None:
    logger, out = pipe_logger
    long_value = "x" * (3 * ATOMIC_WRITE_BYTES)
    logger.info("long", extra={"detail": long_value})
    logger.info("short")
    logger.handlers[0].stream.close()  # type: ignore[attr-defined]
    first, second = (json.loads(line) for line in wait_for_lines(out, 2))
    assert first["detail"] == long_value
    assert second["message"] == "short"


def test_a_stream_without_a_file_descriptor_gets_the_lines_too() -> None:
    out = io.StringIO()
    handler = LineHandler(out)
    handler.setFormatter(json_formatter())
    record = logging.makeLogRecord({"name": "lbp_cds", "levelname": "INFO", "levelno": 20, "msg": "hook call"})
    handler.handle(record)
    line = json.loads(out.getvalue())
    assert line["message"] == "hook call"
    assert line["time"] == logging.Formatter().formatTime(record)  # the stdlib's time text, as before


def wait_for_lines(path: Path, count: int) -> list[str]:
    for _ in range(200):
        lines = path.read_text().splitlines() if path.exists() else []
        if len(lines) >= count:
            return lines
        threading.Event().wait(0.05)
    raise AssertionError(f"{len(lines)} lines, expected {count}")
