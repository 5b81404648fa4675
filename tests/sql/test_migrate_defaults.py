"""A new optional field with a default: existing rows get a constant default (one UPDATE,
both dialects); a default that is not a constant leaves them null, and the plan says so."""

from __future__ import annotations

import datetime
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from charpente.design.model import Default, Design, Field, Kind, Resource
from charpente.sql.engine import create_engine
from charpente.sql.migrate import Safety, apply_migration, plan_migration
from charpente.sql.schema import build_metadata

pytestmark = pytest.mark.anyio

TITLE = Field("title", Kind.STRING, required=True)


def design(*fields: Field) -> Design:
    return Design("blog", 1, {"posts": Resource("posts", (TITLE, *fields))})


@pytest.fixture
async def engine(db_target: Any) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(db_target.url, schema=db_target.schema)
    yield engine
    await engine.dispose()


async def rows(engine: AsyncEngine, d: Design) -> list[dict[str, Any]]:
    table = build_metadata(d).tables["posts"]
    async with engine.connect() as conn:
        result = await conn.execute(sa.select(table).order_by(table.c.title))
        return [dict(r._mapping) for r in result]


async def test_existing_rows_get_the_constant_default_of_a_new_optional_field(
    engine: AsyncEngine,
) -> None:
    before = design()
    await apply_migration(engine, before)
    now = datetime.datetime.now(datetime.UTC)
    async with engine.begin() as conn:
        await conn.execute(
            build_metadata(before).tables["posts"].insert(),
            [
                {"id": str(uuid.uuid4()), "title": t, "created_at": now, "updated_at": now}
                | {"version": 1}
                for t in ("a", "b")
            ],
        )
    after = design(
        Field("lang", Kind.STRING, default=Default("en")),
        Field("meta", Kind.JSON, default=Default({"tags": ["x"]})),
        Field("seen_at", Kind.DATETIME, default=Default(now=True)),
    )
    plan = await plan_migration(engine, after)
    described = {s.description: s.safety for s in plan.steps}
    assert described == {
        "add column posts.lang (string, nullable, existing rows get 'en')": Safety.SAFE,
        'add column posts.meta (json, nullable, existing rows get \'{"tags": ["x"]}\')': (
            Safety.SAFE
        ),
        "add column posts.seen_at (datetime, nullable, existing rows keep null)": Safety.SAFE,
    }
    await apply_migration(engine, after)
    found = await rows(engine, after)
    assert [(r["lang"], r["meta"], r["seen_at"]) for r in found] == [
        ("en", {"tags": ["x"]}, None),
        ("en", {"tags": ["x"]}, None),
    ]
    assert not (await plan_migration(engine, after)).steps  # nothing left: no drift
