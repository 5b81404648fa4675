"""Ids are UUIDv7: valid, distinct and increasing within a process."""

from __future__ import annotations

import uuid

from charpente.runtime.ids import new_id


def test_ids_are_canonical_uuid7s_that_strictly_increase() -> None:
    ids = [new_id() for _ in range(5000)]
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)
    for text in ids[:50]:
        parsed = uuid.UUID(text)
        assert parsed.version == 7
        assert parsed.variant == uuid.RFC_4122
        assert str(parsed) == text


def test_an_id_starts_with_the_current_unix_millisecond() -> None:
    import time

    before = time.time_ns() // 1_000_000
    stamp = uuid.UUID(new_id()).int >> 80
    after = time.time_ns() // 1_000_000
    assert before <= stamp <= after + 1


def test_ids_made_in_a_burst_do_not_share_their_random_part() -> None:
    randoms = {uuid.UUID(new_id()).int & ((1 << 62) - 1) for _ in range(2000)}
    assert len(randoms) == 2000
