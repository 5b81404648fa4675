"""Over random rules, callers, reads and writes, the cached app answers exactly what the
same app without a cache answers: no entry is ever served to a caller whose rule inputs
differ, and no read after a write's answer sees the older version."""

from __future__ import annotations

import random
from typing import Any

import httpx
import pytest

from charpente.http.app import build_app
from charpente.runtime.caching import MemoryCache, ResponseCache
from charpente.runtime.service import Service
from charpente.sql.database import SqlDatabase

pytestmark = pytest.mark.anyio

RULES = [
    "true",
    "author == auth.id",
    'visibility == "public" or author == auth.id',
    'auth.role == "admin" or visibility == "public"',
    'auth.id != null and visibility != "private"',
]
DESIGN = """
charpente: 1
name: prop
resources:
  posts:
    cache: {{ttl: 60s}}
    access:
      read: {rule}
      create: true
      update: true
    fields:
      author: {{type: uuid}}
      visibility: {{enum: [public, friends, private], required: true}}
      title: {{type: string, required: true}}
"""


def _body(response: httpx.Response) -> Any:
    found = response.json()
    if isinstance(found, dict):
        found.pop("request_id", None)  # a problem names its own request
    return found


def _clients(api: Any) -> tuple[httpx.AsyncClient, httpx.AsyncClient]:
    database = SqlDatabase(api.engine, api.design)
    plain = Service(api.design, database)
    cached = Service(api.design, database)
    cache = ResponseCache(api.design, MemoryCache())
    cached.on_write.append(cache.written)
    apps = [
        build_app(plain, api.design, accounts=api.accounts),
        build_app(cached, api.design, accounts=api.accounts, response_cache=cache),
    ]
    made = [
        httpx.AsyncClient(transport=httpx.ASGITransport(app=a), base_url="http://test")
        for a in apps
    ]
    return made[0], made[1]


async def test_cached_answers_equal_uncached_ones(make_api: Any) -> None:
    rng = random.Random(12)
    first = await make_api(DESIGN.format(rule=RULES[0]))
    callers: dict[str, dict[str, str]] = {"anonymous": {}}
    for email, role in (("ada@x.io", "member"), ("bob@x.io", "member"), ("root@x.io", "admin")):
        callers[email] = await first.sign_in(email, role=role)
    people = [first.ids[e] for e in ("ada@x.io", "bob@x.io", "root@x.io")]
    compared = 0
    for rule in RULES:
        api = await make_api(DESIGN.format(rule=rule), url=str(first.engine.url))
        plain, cached = _clients(api)
        ids = []
        for i in range(6):
            body = {"author": rng.choice(people), "visibility": rng.choice(["public", "friends",
                    "private"]), "title": f"t{i}"}  # fmt: skip
            created = await cached.post("/v1/posts", json=body)
            assert created.status_code == 201, created.text
            ids.append(created.json()["id"])
        for _ in range(40):
            headers = callers[rng.choice(list(callers))]
            if rng.random() < 0.2:
                patch = {"visibility": rng.choice(["public", "friends", "private"])}
                await cached.patch(f"/v1/posts/{rng.choice(ids)}", json=patch)
                continue
            path = rng.choice(["/v1/posts", f"/v1/posts/{rng.choice(ids)}", "/v1/posts?limit=2"])
            want = await plain.get(path, headers=headers)
            got = await cached.get(path, headers=headers)
            assert (got.status_code, _body(got)) == (want.status_code, _body(want)), (rule, path)
            compared += 1
        await plain.aclose()
        await cached.aclose()
    assert compared > 100
