"""GCRA decisions, the in-process limiter, the fallback limiter and the RateLimit headers."""

from __future__ import annotations

import asyncio
import logging

import pytest
from hypothesis import given, strategies as st

from charpente.design.limits import LimitRule, parse_limit
from charpente.runtime.ratelimit import (
    Decision,
    FallbackLimiter,
    MemoryLimiter,
    bounded_key,
    gcra,
    gcra_params,
    limit_headers,
)

EPOCH = 1_767_225_600.0  # a wall-clock-sized time: floats there have few digits to spare


class ManualClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def burst(rule: LimitRule, now: float, tat: float | None = None) -> list[Decision]:
    """Hit a bucket as fast as possible (all at `now`) until the first refusal."""
    decisions = []
    while True:
        decision = gcra(tat, now, rule)
        decisions.append(decision)
        if not decision.allowed:
            return decisions
        tat = decision.new_tat


@pytest.mark.parametrize("text", ["10/minute", "30/minute", "3/second", "7/day", "1000/hour"])
@pytest.mark.parametrize("now", [0.0, 1000.5, EPOCH])
def test_a_full_bucket_allows_exactly_count_then_refuses(text, now):
    rule = parse_limit(text)
    decisions = burst(rule, now)
    assert len(decisions) == rule.count + 1
    assert [d.remaining for d in decisions[:-1]] == list(range(rule.count - 1, -1, -1))
    assert not decisions[-1].allowed
    assert decisions[-1].remaining == 0


def test_a_burst_option_sets_how_many_fit_at_once():
    assert len(burst(parse_limit("10/minute burst 3"), EPOCH)) == 4
    assert len(burst(parse_limit("2/minute burst 5"), EPOCH)) == 6


def test_a_refused_request_waits_one_emission_interval_after_an_exact_burst():
    rule = parse_limit("30/minute")  # T = 2 s
    refused = burst(rule, EPOCH)[-1]
    assert refused.retry_after == pytest.approx(2.0)
    assert refused.reset_after == pytest.approx(60.0)


def test_the_bucket_refills_one_request_every_emission_interval():
    rule = parse_limit("30/minute")
    tat = burst(rule, EPOCH)[-1].new_tat
    assert not gcra(tat, EPOCH + 1.999, rule).allowed
    assert gcra(tat, EPOCH + 1.999, rule).retry_after == pytest.approx(0.001)
    later = gcra(tat, EPOCH + 2.0, rule)
    assert later.allowed
    assert later.remaining == 0
    assert not gcra(later.new_tat, EPOCH + 2.0, rule).allowed
    assert gcra(later.new_tat, EPOCH + 6.0, rule).remaining == 1  # 2 back, this one spent


def test_a_bucket_idle_for_a_period_is_full_again():
    rule = parse_limit("10/minute")
    tat = burst(rule, EPOCH)[-1].new_tat
    assert len(burst(rule, EPOCH + 60.0, tat)) == 11


def test_a_refusal_does_not_move_the_tat():
    rule = parse_limit("1/minute")
    first = gcra(None, EPOCH, rule)
    refused = gcra(first.new_tat, EPOCH + 10, rule)
    assert not refused.allowed
    assert refused.new_tat == first.new_tat
    assert refused.retry_after == pytest.approx(50.0)


def test_emission_intervals_round_up_to_whole_microseconds():
    assert gcra_params(parse_limit("30/minute")) == (2_000_000, 60_000_000)
    assert gcra_params(parse_limit("3/second")) == (333_334, 1_000_002)
    assert gcra_params(parse_limit("3/second burst 1")) == (333_334, 333_334)


@given(
    count=st.integers(1, 200),
    period=st.integers(1, 86_400),
    now=st.floats(0, 4e9, allow_nan=False),
)
def test_any_rule_allows_exactly_its_count_in_a_burst(count, period, now):
    rule = LimitRule(count, float(period))
    assert len(burst(rule, now)) == count + 1


@pytest.mark.anyio
async def test_the_memory_limiter_keeps_a_bucket_per_key(anyio_backend):
    clock = ManualClock()
    limiter = MemoryLimiter(clock=clock)
    rule = parse_limit("2/minute")
    assert [(await limiter.hit("a", rule)).allowed for _ in range(3)] == [True, True, False]
    assert (await limiter.hit("b", rule)).allowed
    clock.now += 30
    assert (await limiter.hit("a", rule)).allowed
    assert not (await limiter.hit("a", rule)).allowed


def test_the_memory_limiter_stays_bounded_under_200k_distinct_keys():
    clock = ManualClock()
    limiter = MemoryLimiter(max_keys=100_000, clock=clock)
    rule = parse_limit("5/minute")
    for i in range(200_000):
        assert limiter.hit_now(f"flood:{i}", rule).allowed
    assert len(limiter) == 100_000
    # The least recently charged went first; the newest buckets still count.
    assert limiter.hit_now("flood:199999", rule).remaining == 3
    assert limiter.hit_now("flood:0", rule).remaining == 4


def test_expired_buckets_are_dropped_as_requests_come():
    clock = ManualClock()
    limiter = MemoryLimiter(clock=clock)
    rule = parse_limit("5/second")
    for i in range(1000):
        limiter.hit_now(f"k{i}", rule)
    clock.now += 1.0  # every bucket is full again
    for _ in range(600):
        limiter.hit_now("busy", rule)
        clock.now += 0.2
    assert len(limiter) <= 2


def test_long_keys_are_stored_by_digest():
    assert bounded_key("posts:1.2.3.4") == "posts:1.2.3.4"
    long = bounded_key("x" * 10_000)
    assert long.startswith("#")
    assert len(long) == 33
    assert bounded_key("#" + "0" * 32) != "#" + "0" * 32
    limiter = MemoryLimiter(clock=ManualClock())
    rule = parse_limit("1/minute")
    assert limiter.hit_now("x" * 10_000, rule).allowed
    assert not limiter.hit_now("x" * 10_000, rule).allowed


class BrokenLimiter:
    """A primary that is down (the Redis tests run the same against a real server)."""

    def __init__(self, error: Exception | None = None, delay: float = 0.0) -> None:
        self.error = error
        self.delay = delay
        self.calls = 0
        self.healthy = MemoryLimiter()

    async def hit(self, key: str, rule: LimitRule) -> Decision:
        self.calls += 1
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.error is not None:
            raise self.error
        return await self.healthy.hit(key, rule)


@pytest.mark.anyio
async def test_the_fallback_decides_while_the_primary_fails_and_logs_once(anyio_backend, caplog):
    clock = ManualClock()
    primary = BrokenLimiter(ConnectionRefusedError("connection refused"))
    seen: list[None] = []
    limiter = FallbackLimiter(
        primary, MemoryLimiter(clock=clock), lambda: seen.append(None), cooldown=2.0, clock=clock
    )
    rule = parse_limit("3/minute")
    with caplog.at_level(logging.INFO, logger="charpente.ratelimit"):
        allowed = [(await limiter.hit("k", rule)).allowed for _ in range(5)]
    assert allowed == [True, True, True, False, False]
    assert limiter.degraded
    assert limiter.degraded_count == 5
    assert len(seen) == 5
    assert primary.calls == 1  # the cool-down spares the broken primary
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "ConnectionRefusedError" in warnings[0].getMessage()


@pytest.mark.anyio
async def test_the_fallback_retries_after_the_cooldown_and_logs_the_recovery(anyio_backend, caplog):
    clock = ManualClock()
    primary = BrokenLimiter(OSError("down"))
    limiter = FallbackLimiter(primary, MemoryLimiter(clock=clock), cooldown=2.0, clock=clock)
    rule = parse_limit("100/minute")
    await limiter.hit("k", rule)
    clock.now += 1.0
    await limiter.hit("k", rule)
    assert primary.calls == 1
    clock.now += 1.5
    await limiter.hit("k", rule)
    assert primary.calls == 2  # tried again, still down
    primary.error = None
    clock.now += 2.0
    with caplog.at_level(logging.INFO, logger="charpente.ratelimit"):
        decision = await limiter.hit("k", rule)
    assert decision.allowed
    assert not limiter.degraded
    assert limiter.degraded_count == 3
    assert any("recovered" in r.getMessage() for r in caplog.records)


@pytest.mark.anyio
async def test_a_slow_primary_times_out_into_the_fallback(anyio_backend):
    primary = BrokenLimiter(delay=5.0)
    limiter = FallbackLimiter(primary, MemoryLimiter(), timeout=0.05)
    loop = asyncio.get_running_loop()
    started = loop.time()
    decision = await limiter.hit("k", parse_limit("1/minute"))
    assert decision.allowed
    assert loop.time() - started < 1.0
    assert limiter.degraded_count == 1


def test_headers_of_an_allowed_request_give_policy_remaining_and_reset():
    rule = parse_limit("30/minute")
    decisions = burst(rule, EPOCH)
    assert limit_headers("posts.create", rule, decisions[17]) == [
        ("RateLimit-Policy", '"posts.create";q=30;w=60'),
        ("RateLimit", '"posts.create";r=12;t=36'),
    ]


def test_headers_of_a_refusal_add_retry_after_rounded_up():
    rule = parse_limit("1/minute")
    first = gcra(None, EPOCH, rule)
    refused = gcra(first.new_tat, EPOCH + 10.5, rule)
    assert limit_headers("login", rule, refused) == [
        ("RateLimit-Policy", '"login";q=1;w=60'),
        ("RateLimit", '"login";r=0;t=50'),
        ("Retry-After", "50"),
    ]
    nearly = gcra(first.new_tat, EPOCH + 59.9999, rule)
    assert dict(limit_headers("login", rule, nearly))["Retry-After"] == "1"
