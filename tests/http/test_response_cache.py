"""The response cache over HTTP (in-process adapter): hits run no SQL, a write's 2xx is
never followed by an older answer, callers with different rule inputs never share, and
If-None-Match on a cached entry is a 304."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from charpente.http.app import build_app
from charpente.runtime.caching import MemoryCache, ResponseCache
from charpente.runtime.service import Service
from charpente.runtime.shapes import MeasuredDatabase, ShapeLog
from charpente.sql.database import SqlDatabase

pytestmark = pytest.mark.anyio

DESIGN = """
charpente: 1
name: cached
cache: {ttl: 60s}
resources:
  posts:
    access:
      read: visibility == "public" or author == auth.id
      create: true
      update: true
    fields:
      author: {type: uuid}
      visibility: {enum: [public, private], required: true}
      title: {type: string, required: true}
      like_count: {count: likes.post}
  likes:
    access: {read: true, create: true}
    fields:
      post: {ref: posts, required: true}
  notes:
    cache: false
    access: {read: true, create: true}
    fields:
      text: {type: string}
  tags:
    access: {read: true, create: true, update: true}
    fields:
      name: {type: string}
"""


class Cached:
    def __init__(self, api: Any) -> None:
        database = SqlDatabase(api.engine, api.design)
        self.log = ShapeLog()
        self.service = Service(api.design, MeasuredDatabase(database, self.log))
        self.cache = ResponseCache(api.design, MemoryCache())
        self.service.on_write.append(self.cache.written)
        app = build_app(self.service, api.design, accounts=api.accounts, response_cache=self.cache)
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        self.client = httpx.AsyncClient(transport=transport, base_url="http://test")

    def queries(self) -> int:
        return sum(c.calls for c in self.log.take())


@pytest.fixture
async def cached(make_api: Any) -> Any:
    api = await make_api(DESIGN)
    found = Cached(api)
    found.api = api  # type: ignore[attr-defined]
    yield found
    await found.client.aclose()


async def test_a_second_read_runs_no_sql_and_a_write_is_seen_at_once(cached: Any) -> None:
    client = cached.client
    created = (await client.post("/v1/tags", json={"name": "a"})).json()
    first = await client.get("/v1/tags")
    assert cached.queries() == 1
    again = await client.get("/v1/tags")
    assert cached.queries() == 0
    assert again.content == first.content
    assert again.headers["cache-control"] == "public, max-age=60"
    item = await client.get(f"/v1/tags/{created['id']}")
    assert (await client.get(f"/v1/tags/{created['id']}")).json() == item.json()
    assert cached.queries() == 1
    patched = await client.post("/v1/tags", json={"name": "b"})
    assert patched.status_code == 201
    after = await client.get("/v1/tags")
    assert [t["name"] for t in after.json()["data"]] == ["a", "b"]


async def test_if_none_match_on_a_cached_entry_is_a_304_without_sql(cached: Any) -> None:
    client = cached.client
    created = (await client.post("/v1/tags", json={"name": "a"})).json()
    first = await client.get(f"/v1/tags/{created['id']}")
    cached.queries()
    revalidated = await client.get(
        f"/v1/tags/{created['id']}", headers={"If-None-Match": first.headers["etag"]}
    )
    assert revalidated.status_code == 304
    assert cached.queries() == 0
    page = await client.get("/v1/tags")
    assert page.headers["etag"].startswith('W/"')
    again = await client.get("/v1/tags", headers={"If-None-Match": page.headers["etag"]})
    assert again.status_code == 304


async def test_callers_with_different_rule_inputs_never_share_an_entry(cached: Any) -> None:
    api, client = cached.api, cached.client
    ada = await api.sign_in("ada@example.com", role="member")
    bob = await api.sign_in("bob@example.com", role="member")
    ada_id = api.ids["ada@example.com"]
    body = {"author": ada_id, "visibility": "private", "title": "secret"}
    assert (await client.post("/v1/posts", json=body, headers=ada)).status_code == 201
    mine = await client.get("/v1/posts", headers=ada)
    theirs = await client.get("/v1/posts", headers=bob)
    anonymous = await client.get("/v1/posts")
    assert [p["title"] for p in mine.json()["data"]] == ["secret"]
    assert theirs.json()["data"] == []
    assert anonymous.json()["data"] == []
    assert mine.headers["cache-control"] == "private"
    assert (await client.get("/v1/posts", headers=ada)).json() == mine.json()


async def test_a_write_to_a_related_resource_moves_the_cached_answer(cached: Any) -> None:
    client = cached.client
    body = {"visibility": "public", "title": "hello"}
    post = (await client.post("/v1/posts", json=body)).json()
    assert (await client.get(f"/v1/posts/{post['id']}")).json()["like_count"] == 0
    assert (await client.post("/v1/likes", json={"post": post["id"]})).status_code == 201
    assert (await client.get(f"/v1/posts/{post['id']}")).json()["like_count"] == 1
    page = await client.get("/v1/likes", params={"expand": "post"})
    assert page.json()["data"][0]["post"]["like_count"] == 1


async def test_uncached_resources_and_exact_counts_always_run(cached: Any) -> None:
    client = cached.client
    await client.post("/v1/notes", json={"text": "x"})
    cached.queries()
    for _ in range(2):
        response = await client.get("/v1/notes")
        assert "cache-control" not in response.headers
    assert cached.queries() == 2
    for _ in range(2):
        assert (await client.get("/v1/tags", params={"count": "exact"})).status_code == 200
    assert cached.queries() == 2


def test_resources_with_encrypted_fields_are_never_cached() -> None:
    from charpente.loader import load_design_text
    from charpente.runtime.caching import cache_plans

    design = load_design_text(
        """
charpente: 1
name: sealed
cache: {ttl: 60s}
resources:
  people:
    access: {read: true}
    fields:
      ssn: {type: string, encrypted: true}
  visits:
    access: {read: true}
    fields:
      person: {ref: people}
  tags:
    access: {read: true}
    fields:
      name: string
"""
    )
    assert set(cache_plans(design)) == {"tags", "accounts"}


async def test_a_write_whose_bump_was_lost_is_repaired_from_the_history(cached: Any) -> None:
    from charpente.runtime.caching import CacheRepair
    from charpente.sql.writelog import SqlWriteLog

    api, client = cached.api, cached.client
    database = SqlDatabase(api.engine, api.design)
    repair = CacheRepair(cached.cache, SqlWriteLog(database), cached.service.clock)
    assert await repair.repair() == 0
    await client.post("/v1/tags", json={"name": "a"})
    assert await repair.repair() == 1  # the cache's own writes are bumped once more
    assert len((await client.get("/v1/tags")).json()["data"]) == 1
    # Another process commits, then dies before its bump: nobody told this cache.
    crashed = Service(api.design, database)
    await crashed.create("tags", {"name": "b"})
    assert len((await client.get("/v1/tags")).json()["data"]) == 1  # stale, for now
    assert await repair.repair() == 1
    assert len((await client.get("/v1/tags")).json()["data"]) == 2
    assert await repair.repair() == 0  # each write is repaired once


class _SlowFills(MemoryCache):
    """A cache whose reads wait between querying and storing: the race a slow reader runs."""

    def __init__(self) -> None:
        super().__init__()
        self.before_fill: Any = None

    async def fill(self, key: str, value: bytes, ttl: float, names: Any, seen: Any) -> bool:
        if self.before_fill is not None:
            await self.before_fill()
        return await super().fill(key, value, ttl, names, seen)


async def test_a_slow_reader_never_stores_what_a_write_made_old(make_api: Any) -> None:
    import asyncio

    api = await make_api(DESIGN)
    database = SqlDatabase(api.engine, api.design)
    service = Service(api.design, database)
    slow = _SlowFills()
    cache = ResponseCache(api.design, slow)
    service.on_write.append(cache.written)
    app = build_app(service, api.design, response_cache=cache)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        tag = (await client.post("/v1/tags", json={"name": "old"})).json()
        path = f"/v1/tags/{tag['id']}"
        queried, written = asyncio.Event(), asyncio.Event()

        async def hold() -> None:  # the reader has its (old) answer: a write lands now
            slow.before_fill = None
            queried.set()
            await written.wait()

        slow.before_fill = hold
        reader = asyncio.create_task(client.get(path))
        await queried.wait()
        assert (await client.patch(path, json={"name": "new"})).status_code == 200
        written.set()
        assert (await reader).json()["name"] == "old"  # it started before the write
        assert (await client.get(path)).json()["name"] == "new"
        assert (await client.get(path)).json()["name"] == "new"
