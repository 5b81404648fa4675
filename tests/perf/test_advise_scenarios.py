"""`charpente advise` on seeded cases, on SQLite and PostgreSQL: the index each slow shape
needs is proposed, none where none is due, and the live database is never changed."""

from __future__ import annotations

import asyncio
import dataclasses
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).parent))

import advise_support as support

from charpente.compile.plan import GetQuery, ListQuery
from charpente.compile.shapes import describe_shape, get_shape, shape_id, shape_spec
from charpente.runtime.advice import Advice, advise, verify_advice
from charpente.runtime.shapes import ShapeStats
from charpente.sql.advisor import planner_for
from charpente.sql.engine import create_engine
from charpente.sql.verify import IndexVerifier

SCALE = 10_000


@pytest.fixture
def seeded(db_target: Any) -> Iterator[tuple[asyncio.Runner, Any, list[str]]]:
    engine = create_engine(db_target.url, schema=db_target.schema)
    runner = asyncio.Runner()
    try:
        users = runner.run(support.seed(engine, support.design(), SCALE))
        yield runner, engine, users
    finally:
        runner.run(engine.dispose())
        runner.close()


def _read_by_id() -> ShapeStats:
    spec = shape_spec(get_shape(GetQuery("posts", "any")))
    return dataclasses.replace(
        support.stats_for(ListQuery("posts")), id=shape_id(spec), kind="get", spec=spec,
        text=describe_shape(spec),
    )  # fmt: skip


def _cases(loaded: Any, users: list[str]) -> dict[str, tuple[ShapeStats, set[str]]]:
    def listing(resource: str, calls: int = 100, **params: str) -> ShapeStats:
        return support.stats_for(support.listing(loaded, resource, list(params.items())), calls)

    author = f'author == "{users[0]}"'
    feed = support.listing(loaded, "feed", [("sort", "-created_at")], id=users[0], role="member")
    return {
        "posts by author and visibility, newest first": (
            listing("posts", filter=f'{author} and visibility == "public"', sort="-created_at"),
            {"posts (author, visibility, created_at DESC, id DESC)"},
        ),
        "comments of a post, newest first": (
            listing("comments", filter='post == "p1"', sort="-created_at"),
            {"comments (post, created_at DESC, id DESC)"},
        ),
        "likes by account": (listing("likes", filter='account == "a1"'), {"likes (account, id)"}),
        "the followers rule's probe": (
            support.stats_for(feed),
            {"follows (followee, follower)", "feed (created_at DESC, id DESC)"},
        ),
        "a mixed-direction sort": (
            listing("posts", sort="-score,title"),
            {"posts (score DESC, title, id)"},
        ),
        "an existing index covers the prefix": (
            listing("articles", filter='writer == "w1"', sort="-created_at"),
            set(),
        ),
        "a reference charpente indexes already": (listing("posts", filter=author), set()),
        "a write-heavy table": (listing("readings", calls=10, filter='sensor == "s1"'), set()),
        "a contains filter": (listing("posts", filter='title ~ "12"'), set()),
        "a read by id": (_read_by_id(), set()),
    }


def _advise(runner: Any, engine: Any, shapes: list[ShapeStats]) -> Advice:
    async def run() -> Advice:
        planner = planner_for(engine, support.design())
        await planner.open()
        try:
            return await advise(shapes, planner)
        finally:
            await planner.close()

    result: Advice = runner.run(run())
    return result


def test_each_slow_shape_gets_its_index_and_no_other_gets_one(seeded: Any) -> None:
    runner, engine, users = seeded
    cases = _cases(support.design(), users)
    advice = _advise(runner, engine, [stats for stats, _ in cases.values()])
    found = {}
    for name, shape in zip(cases, advice.shapes, strict=True):
        found[name] = {s.candidate.label for s in shape.suggestions}
    expected = {name: want for name, (_, want) in cases.items()}
    assert found == expected


def test_write_heavy_and_contains_shapes_get_a_note_instead(seeded: Any) -> None:
    runner, engine, users = seeded
    cases = _cases(support.design(), users)
    shapes = [cases["a write-heavy table"][0], cases["a contains filter"][0]]
    heavy, contains = _advise(runner, engine, shapes).shapes
    assert heavy.suggestions == ()
    assert any("not worth the write cost" in n for n in heavy.notes)
    assert any("pg_trgm" in n for n in contains.notes)


def test_the_patch_is_the_design_entries_with_directions(seeded: Any) -> None:
    runner, engine, users = seeded
    cases = _cases(support.design(), users)
    advice = _advise(runner, engine, [cases["posts by author and visibility, newest first"][0]])
    assert advice.indexes() == {"posts": [["author", "visibility", "-created_at"]]}


def test_advising_builds_no_index_on_the_live_database(seeded: Any) -> None:
    runner, engine, users = seeded

    async def indexes() -> list[str]:
        async with engine.connect() as conn:
            return sorted(
                await conn.run_sync(
                    lambda sync: [
                        i["name"]
                        for t in sa.inspect(sync).get_table_names()
                        for i in sa.inspect(sync).get_indexes(t)
                    ]
                )
            )

    before = runner.run(indexes())
    _advise(runner, engine, [stats for stats, _ in _cases(support.design(), users).values()])
    assert runner.run(indexes()) == before


def test_verify_times_the_shape_before_and_after_and_leaves_nothing_behind(seeded: Any) -> None:
    runner, engine, users = seeded
    case = _cases(support.design(), users)["comments of a post, newest first"][0]
    advice = _advise(runner, engine, [case])
    verifier = IndexVerifier(engine, support.design(), runs=9)
    verified = runner.run(verify_advice(advice, verifier))
    [suggestion] = verified.shapes[0].suggestions
    timings = suggestion.verified
    assert timings is not None
    assert timings["p50_ms_after"] < timings["p50_ms_before"]
    assert timings["index_bytes"] > 0
    assert suggestion.summary()["verified"] == dict(timings)

    async def leftovers() -> list[str]:
        async with engine.connect() as conn:
            if engine.dialect.name == "sqlite":
                found = await conn.exec_driver_sql(
                    "SELECT name FROM sqlite_schema WHERE name LIKE 'charpente_verify_%'"
                )
            else:
                found = await conn.exec_driver_sql(
                    "SELECT datname FROM pg_database WHERE datname LIKE 'charpente_verify_%'"
                )
            return [str(r[0]) for r in found]

    assert runner.run(leftovers()) == []


def test_two_hundred_shapes_are_advised_in_under_thirty_seconds(seeded: Any) -> None:
    runner, engine, _users = seeded
    loaded = support.design()
    shapes = []
    fields = ["author", "visibility", "title", "score", "created_at"]
    for i in range(200):
        first, second = fields[i % 5], fields[(i // 5) % 5]
        sort = f"{'-' if i % 2 else ''}{fields[(i // 25) % 5]}"
        where = f"{first} != null and {second} != null and score >= {i % 97}"
        query = support.listing(loaded, "posts", [("filter", where), ("sort", sort)])
        stats = support.stats_for(query)
        shapes.append(dataclasses.replace(stats, id=f"{stats.id}{i}"))
    start = time.perf_counter()
    advice = _advise(runner, engine, shapes)
    assert time.perf_counter() - start < 30
    assert len(advice.shapes) == 200
