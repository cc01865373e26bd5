"""A card's and a suggestion's uuid: a time-ordered (version 7) UUID in its canonical form, fresh each time."""

from __future__ import annotations

import time
import uuid

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
