"""The response cache's Cache port, in process and on Redis: generations, guarded fills,
expiry; and on a Redis that cannot be reached, answers that go on without it."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import redis
from tests.conftest import service_missing

from charpente.cache.responses import redis_cache_from_url
from charpente.loader import load_design_text
from charpente.runtime.caching import Cache, CacheEntry, CacheError, MemoryCache, ResponseCache
from charpente.runtime.caller import ANONYMOUS

REDIS_URL = os.environ.get("CHARPENTE_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
CLOSED_PORT_URL = "redis://127.0.0.1:1/0"

pytestmark = pytest.mark.anyio


@pytest.fixture
def prefix() -> Iterator[str]:
    found = f"charpente:test:{uuid.uuid4().hex}:"
    yield found
    client = redis.Redis.from_url(REDIS_URL)
    try:
        keys = list(client.scan_iter(match=f"{found}*"))
        if keys:
            client.delete(*keys)
    except redis.RedisError:
        pass
    finally:
        client.close()


@pytest.fixture(params=["memory", "redis"])
async def cache(request: pytest.FixtureRequest, prefix: str) -> AsyncIterator[Cache]:
    if request.param == "memory":
        yield MemoryCache(max_entries=3)
        return
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1, socket_timeout=1)
    try:
        client.ping()
    except redis.RedisError as exc:
        service_missing("Redis", f"{type(exc).__name__}: {exc}")
    finally:
        client.close()
    found = redis_cache_from_url(REDIS_URL, prefix, timeout=1.0)
    yield found
    await found.close()


async def test_generations_start_at_zero_and_a_bump_moves_them(cache: Cache) -> None:
    assert await cache.generations(["posts", "users"]) == (0, 0)
    await cache.bump(["posts"])
    await cache.bump(["posts", "users"])
    assert await cache.generations(["posts", "users"]) == (2, 1)


async def test_a_fill_is_stored_only_while_the_generations_it_saw_hold(cache: Cache) -> None:
    seen = await cache.generations(["posts"])
    assert await cache.fill("k1", b"v1", 60, ["posts"], seen)
    assert await cache.get("k1") == b"v1"
    await cache.bump(["posts"])  # a write committed while a slow reader was querying
    assert not await cache.fill("k2", b"old", 60, ["posts"], seen)
    assert await cache.get("k2") is None


async def test_an_entry_expires_after_its_ttl(cache: Cache) -> None:
    assert await cache.fill("k", b"v", 0.05, [], ())
    await asyncio.sleep(0.2)
    assert await cache.get("k") is None


DESIGN = """
charpente: 1
name: c
resources:
  tags:
    cache: {ttl: 60s}
    access: {read: true}
    fields: {name: string}
"""


async def test_with_redis_unreachable_answers_are_computed_and_counted() -> None:
    down = redis_cache_from_url(CLOSED_PORT_URL, "x:", timeout=0.1)
    cache = ResponseCache(load_design_text(DESIGN), down)
    calls: list[int] = []

    async def compute() -> CacheEntry:
        calls.append(1)
        return CacheEntry(b"{}", '"1"')

    key = cache.key("tags", "list", ANONYMOUS)
    assert await cache.answer("tags", key, compute) == CacheEntry(b"{}", '"1"')
    await cache.written("tags")
    assert calls == [1]
    assert cache.bypassed == 2
    with pytest.raises(CacheError):
        await down.generations(["tags"])
    await down.close()


async def test_one_request_per_key_computes_while_the_others_wait() -> None:
    cache = ResponseCache(load_design_text(DESIGN), MemoryCache())
    release = asyncio.Event()
    calls: list[int] = []

    async def compute() -> CacheEntry:
        calls.append(1)
        await release.wait()
        return CacheEntry(b"[]", '"p"')

    key = cache.key("tags", "list", ANONYMOUS)
    waiting: list[Any] = [
        asyncio.create_task(cache.answer("tags", key, compute)) for _ in range(50)
    ]
    await asyncio.sleep(0.01)
    release.set()
    answers = await asyncio.gather(*waiting)
    assert calls == [1]
    assert {a.body for a in answers} == {b"[]"}


STALE = """
charpente: 1
name: c
resources:
  tags:
    cache: {ttl: 60s, stale: 5s}
    access: {read: true}
    fields: {name: string}
"""


async def test_with_stale_allowed_the_previous_answer_is_served_while_it_refills() -> None:
    cache = ResponseCache(load_design_text(STALE), MemoryCache())
    key = cache.key("tags", "list", ANONYMOUS)
    versions = iter([b"v1", b"v2"])
    release = asyncio.Event()

    async def compute() -> CacheEntry:
        body = next(versions)
        if body == b"v2":
            await release.wait()
        return CacheEntry(body, '"x"')

    assert (await cache.answer("tags", key, compute)).body == b"v1"  # type: ignore[union-attr]
    await cache.written("tags")
    served = await cache.answer("tags", key, compute)
    assert served is not None
    assert served.body == b"v1"  # at once, while v2 is computed in the background
    release.set()
    for _ in range(100):
        found = await cache.answer("tags", key, compute)
        if found is not None and found.body == b"v2":
            break
        await asyncio.sleep(0.01)
    assert found is not None
    assert found.body == b"v2"


def test_stale_is_at_most_the_ttl() -> None:
    from charpente.errors import DesignError

    with pytest.raises(DesignError, match="`stale` is a duration from 1s to the ttl"):
        load_design_text(STALE.replace("stale: 5s", "stale: 2m"))
