"""The Limiter port's contract, run on every adapter (in process and Redis).

Redis comes from CHARPENTE_TEST_REDIS_URL (default: the local server); its cases skip
without a server, unless CHARPENTE_REQUIRE_SERVICES=1.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator

import pytest
import redis
from tests.conftest import service_missing

from charpente.cache.redis import redis_limiter_from_url
from charpente.design.limits import parse_limit
from charpente.runtime.ratelimit import Limiter, MemoryLimiter

REDIS_URL = os.environ.get("CHARPENTE_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


@pytest.fixture(params=["memory", "redis"])
async def limiter(request: pytest.FixtureRequest, anyio_backend: str) -> AsyncIterator[Limiter]:
    if request.param == "memory":
        yield MemoryLimiter()
        return
    probe = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1, socket_timeout=1)
    try:
        probe.ping()
    except redis.RedisError as exc:
        service_missing("Redis", f"{type(exc).__name__}: {exc}")
    prefix = f"charpente:test:{uuid.uuid4().hex}:"
    adapter = redis_limiter_from_url(REDIS_URL, timeout=1.0, prefix=prefix)
    try:
        yield adapter
    finally:
        await adapter.close()
        keys = list(probe.scan_iter(match=f"{prefix}*"))
        if keys:
            probe.delete(*keys)
        probe.close()


@pytest.mark.anyio
async def test_a_full_bucket_allows_count_then_refuses(limiter):
    rule = parse_limit("5/minute")
    decisions = [await limiter.hit("k", rule) for _ in range(6)]
    assert [d.allowed for d in decisions] == [True] * 5 + [False]
    assert [d.remaining for d in decisions] == [4, 3, 2, 1, 0, 0]
    assert 11.0 < decisions[-1].retry_after <= 12.0
    assert 59.0 < decisions[-1].reset_after <= 60.0
    assert decisions[0].retry_after == 0.0


@pytest.mark.anyio
async def test_keys_have_buckets_of_their_own(limiter):
    rule = parse_limit("1/minute")
    assert (await limiter.hit("a", rule)).allowed
    assert not (await limiter.hit("a", rule)).allowed
    assert (await limiter.hit("b", rule)).allowed


@pytest.mark.anyio
async def test_a_burst_sets_how_many_fit_at_once(limiter):
    rule = parse_limit("1/minute burst 3")
    assert [(await limiter.hit("k", rule)).allowed for _ in range(4)] == [True] * 3 + [False]


@pytest.mark.anyio
async def test_a_refused_request_waits_at_most_one_emission_interval(limiter):
    rule = parse_limit("1/second")
    first = await limiter.hit("k", rule)
    refused = await limiter.hit("k", rule)
    assert first.allowed
    assert not refused.allowed
    assert 0.0 < refused.retry_after <= 1.0
