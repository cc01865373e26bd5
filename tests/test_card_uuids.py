"""A card's and a suggestion's uuid: a random (version 4) UUID in its canonical form, fresh each time."""

from __future__ import annotations

import uuid

from cards.render import Uuids


def test_each_uuid_is_a_canonical_random_uuid() -> None:
    uuids = Uuids()
    drawn = [uuids.new() for _ in range(1000)]  # several batches of os.urandom
    for text in drawn:
        parsed = uuid.UUID(text)
        assert str(parsed) == text
        assert parsed.version == 4
        assert parsed.variant == uuid.RFC_4122
    assert len(set(drawn)) == len(drawn)
