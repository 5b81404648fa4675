"""The retry schedule and event patterns, without I/O."""

from __future__ import annotations

import pytest

from charpente.runtime.webhook_requests import matches
from charpente.runtime.webhooks import DEFAULT_SCHEDULE, RetrySchedule


def test_the_default_schedule_tries_eleven_times_over_about_two_days() -> None:
    schedule = RetrySchedule()
    assert schedule.attempts == 11
    assert schedule.delays[0] == 0  # the first attempt goes at once
    total = sum(DEFAULT_SCHEDULE)
    assert 46 * 3600 < total < 48 * 3600
    assert list(DEFAULT_SCHEDULE) == sorted(DEFAULT_SCHEDULE)


@pytest.mark.parametrize(("draw", "factor"), [(0.0, 0.8), (0.5, 1.0), (0.999999, 1.2)])
def test_each_delay_is_spread_by_at_most_a_fifth_either_way(draw: float, factor: float) -> None:
    schedule = RetrySchedule(random=lambda: draw)
    for attempts in range(1, schedule.attempts):
        assert schedule.delay_after(attempts) == pytest.approx(
            DEFAULT_SCHEDULE[attempts] * factor, rel=1e-5
        )


def test_after_the_last_attempt_there_is_no_delay_the_delivery_is_dead() -> None:
    schedule = RetrySchedule((0.0, 1.0, 2.0), jitter=0)
    assert [schedule.delay_after(n) for n in range(4)] == [0.0, 1.0, 2.0, None]


@pytest.mark.parametrize(
    ("delays", "jitter"), [((), 0.2), ((1.0, -1.0), 0.2), ((1.0,), 1.0), ((1.0,), -0.1)]
)
def test_a_schedule_that_makes_no_sense_is_refused(
    delays: tuple[float, ...], jitter: float
) -> None:
    with pytest.raises(ValueError, match=r"schedule|jitter"):
        RetrySchedule(delays, jitter)


@pytest.mark.parametrize(
    ("patterns", "key", "expected"),
    [
        (("posts.created",), "posts.created", True),
        (("posts.created",), "posts.updated", False),
        (("posts.*",), "posts.deleted", True),
        (("posts.*",), "likes.created", False),
        (("*.created",), "likes.created", True),
        (("*.*",), "comments.updated", True),
        (("likes.created", "posts.updated"), "posts.updated", True),
        (("post.*",), "posts.created", False),
    ],
)
def test_event_patterns_name_a_resource_and_an_action_or_any(
    patterns: tuple[str, ...], key: str, expected: bool
) -> None:
    assert matches(patterns, key) is expected
