"""The advise scenario suite's design, data and shapes (imported by the tests beside it)."""

from __future__ import annotations

import datetime
import random
import uuid
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from charpente.compile.plan import ListQuery
from charpente.compile.policy import DENIED, row_filter, with_filter
from charpente.compile.request import parse_list_params
from charpente.compile.shapes import describe_shape, list_shape, shape_id, shape_spec
from charpente.design.model import Design
from charpente.loader import load_design_text
from charpente.runtime.shapes import ShapeStats
from charpente.sql.schema import build_metadata

DESIGN_TEXT = """
charpente: 1
name: advise
resources:
  users:
    access: {read: true}
    fields:
      handle: {type: string, required: true}
  posts:
    access: {read: true}
    fields:
      author: {ref: users, required: true}
      visibility: {enum: [public, friends], required: true}
      title: {type: string, required: true}
      score: {type: int, required: true}
  feed:
    access:
      list: exists(follows, followee == feed.author and follower == auth.id)
    fields:
      author: {ref: users, required: true}
      body: {type: string, required: true}
  follows:
    access: {read: true}
    fields:
      follower: {type: uuid, required: true}
      followee: {type: uuid, required: true}
  comments:
    access: {read: true}
    fields:
      post: {type: string, required: true}
      body: {type: string, required: true}
  likes:
    access: {read: true}
    fields:
      account: {type: string, required: true}
      post: {type: string, required: true}
  articles:
    access: {read: true}
    fields:
      writer: {type: string, required: true}
      title: {type: string, required: true}
    indexes: [[writer, -created_at]]
  readings:
    access: {read: true}
    fields:
      sensor: {type: string, required: true}
      value: {type: int, required: true}
"""

USERS = 200
BASE = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)


def design() -> Design:
    return load_design_text(DESIGN_TEXT)


def _records(count: int, make: Any, rng: random.Random) -> list[dict[str, Any]]:
    rows = []
    for i in range(count):
        at = BASE + datetime.timedelta(seconds=i)
        row = {"id": str(uuid.UUID(int=rng.getrandbits(128))), "version": 1}
        row |= {"created_at": at, "updated_at": at, **make(i)}
        rows.append(row)
    return rows


async def seed(engine: AsyncEngine, loaded: Design, scale: int) -> list[str]:
    """Create the tables and fill them; the user ids."""
    rng = random.Random(7)
    metadata = build_metadata(loaded)
    async with engine.begin() as conn:
        await conn.run_sync(metadata.create_all)
    users = _records(USERS, lambda i: {"handle": f"u{i}"}, rng)
    ids = [str(u["id"]) for u in users]

    def pick(i: int) -> str:
        return ids[(i * 7919) % USERS]

    tables: dict[str, list[dict[str, Any]]] = {
        "users": users,
        "posts": _records(
            scale,
            lambda i: {
                "author": pick(i),
                "visibility": "public" if i % 3 else "friends",
                "title": f"title {i}",
                "score": i % 97,
            },
            rng,
        ),
        "feed": _records(scale, lambda i: {"author": pick(i), "body": "b"}, rng),
        "follows": _records(
            scale // 4, lambda i: {"follower": pick(i), "followee": pick(i + 1 + i % 13)}, rng
        ),
        "comments": _records(scale, lambda i: {"post": f"p{i % (scale // 10)}", "body": "c"}, rng),
        "likes": _records(scale, lambda i: {"account": f"a{i % (scale // 20)}", "post": "p"}, rng),
        "articles": _records(scale, lambda i: {"writer": f"w{i % 100}", "title": "t"}, rng),
        "readings": _records(
            scale // 2, lambda i: {"sensor": f"s{i % (scale // 40)}", "value": i}, rng
        ),
    }
    async with engine.begin() as conn:
        for name, rows in tables.items():
            table = metadata.tables[name]
            for start in range(0, len(rows), 2000):
                await conn.execute(sa.insert(table), rows[start : start + 2000])
        # a write-heavy table: many more writes (history events) than reads
        events = metadata.tables["charpente_events"]
        for start in range(0, 5000, 2500):
            await conn.execute(
                sa.insert(events),
                [_event("readings", i) for i in range(start, start + 2500)],
            )
    return ids


def _follow(follower: str, followee: str) -> dict[str, str]:
    return {"follower": follower, "followee": followee}


def _event(resource: str, second: int) -> dict[str, Any]:
    at = BASE + datetime.timedelta(seconds=second)
    return {
        "id": str(uuid.uuid4()),
        "resource": resource,
        "record_id": str(uuid.uuid4()),
        "action": "created",
        "version": 1,
        "at": at,
        "actor": None,
        "changes": "{}",
        "request_id": None,
        "record": None,
    }


def stats_for(query: ListQuery, calls: int = 100, mean_ms: float = 20.0) -> ShapeStats:
    spec = shape_spec(list_shape(query))
    histogram = (0,) * 12 + (calls,)
    total = int(calls * mean_ms * 1000)
    return ShapeStats(
        shape_id(spec), "list", query.resource, spec, describe_shape(spec), calls, calls * 20,
        total, total // calls * 2, histogram, BASE, BASE,
    )  # fmt: skip


def listing(
    loaded: Design, resource: str, params: Sequence[tuple[str, str]], **auth: str
) -> ListQuery:
    query = parse_list_params(loaded.resources[resource], loaded, params)
    rule = row_filter(loaded.resources[resource], "list", auth or None)
    assert rule is not DENIED
    return ListQuery(
        query.resource, with_filter(query.where, rule), query.sort, query.limit, query.after
    )
