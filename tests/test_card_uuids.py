"""A card's and a suggestion's uuid: a time-ordered (version 7) UUID in its canonical form, fresh each time."""

from __future__ import annotations

import json
import os
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

from cards.render import Uuids


def test_each_uuid_is_a_canonical_version_7_uuid() -> None:
    uuids = Uuids()
    drawn = [uuids.new() for _ in range(1000)]  # several batches of os.urandom
    for text in drawn:
        parsed = uuid.UUID(text)
        assert str(parsed) == text
        assert parsed.version == 7
        assert parsed.variant == uuid.RFC_4122
    assert len(set(drawn)) == len(drawn)


def test_a_uuid_begins_with_the_time_it_was_drawn_so_later_ones_sort_after() -> None:
    uuids = Uuids()
    before = time.time_ns() // 1_000_000
    first = uuids.new()
    after = time.time_ns() // 1_000_000
    assert before <= uuid.UUID(first).int >> 80 <= after
    time.sleep(0.002)
    assert uuids.new() > first  # the canonical text sorts as the time does


def test_the_random_bits_differ_between_uuids_drawn_in_the_same_millisecond() -> None:
    uuids = Uuids()
    drawn = [uuid.UUID(uuids.new()) for _ in range(200)]
    random_parts = {u.int & ((1 << 62) - 1) for u in drawn}
    assert len(random_parts) == len(drawn)


def test_threads_drawing_at_once_never_draw_the_same_uuid() -> None:
    def draw() -> list[str]:
        return [Uuids().new() for _ in range(2000)]

    with ThreadPoolExecutor(max_workers=4) as pool:
        drawn = [text for batch in pool.map(lambda _: draw(), range(8)) for text in batch]
    assert len(set(drawn)) == len(drawn) == 16_000


def test_a_forked_worker_does_not_draw_the_uuids_its_parent_will() -> None:
    """A server's workers are forked from one process: each must draw its own random bits."""
    uuids = Uuids()
    uuids.new()  # the parent now holds unused random bytes
    read_end, write_end = os.pipe()
    child = os.fork()
    if child == 0:  # the worker
        os.close(read_end)
        os.write(write_end, json.dumps([uuids.new() for _ in range(50)]).encode())
        os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end) as pipe:
        in_child = json.loads(pipe.read())
    os.waitpid(child, 0)
    in_parent = [uuids.new() for _ in range(50)]
    random_bits = {uuid.UUID(text).int & ((1 << 62) - 1) for text in in_child + in_parent}
    assert len(random_bits) == 100
