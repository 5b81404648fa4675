"""Migrations on both dialects: plan, classify, refuse, apply, record; and the design diff."""

from __future__ import annotations

import asyncio
import datetime
import decimal
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from charpente.design.diff import design_from_json, design_to_json, diff_designs
from charpente.design.model import (
    CountSource,
    Default,
    Design,
    Field,
    Index,
    IndexColumn,
    Kind,
    OnDelete,
    Resource,
)
from charpente.errors import MigrationError
from charpente.loader import load_design_text
from charpente.sql.engine import create_engine
from charpente.sql.migrate import (
    HISTORY_TABLE,
    MigrationPlan,
    MigrationStep,
    Safety,
    apply_migration,
    database_is_current,
    plan_migration,
)
from charpente.sql.schema import build_metadata
from charpente.templates import template_text

pytestmark = pytest.mark.anyio

TITLE = Field("title", Kind.STRING, required=True, max_length=200)
VISIBILITY = Field("visibility", Kind.ENUM, choices=("public", "followers", "private"))


def posts(*fields: Field, **options: Any) -> Resource:
    return Resource("posts", (TITLE, VISIBILITY, *fields), **options)


def likes() -> Resource:
    post = Field("post", Kind.REF, required=True, ref="posts", on_delete=OnDelete.CASCADE)
    return Resource("likes", (post,))


def design(*resources: Resource) -> Design:
    return Design("social", 1, {r.name: r for r in resources})


@pytest.fixture
async def engine(db_target) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(db_target.url, schema=db_target.schema)
    yield engine
    await engine.dispose()


def row(**values: Any) -> dict[str, Any]:
    now = datetime.datetime.now(datetime.UTC)
    return {"id": str(uuid.uuid4()), "created_at": now, "updated_at": now, "version": 1} | values


async def insert(engine: AsyncEngine, d: Design, table: str, *rows: dict[str, Any]) -> None:
    async with engine.begin() as conn:
        await conn.execute(build_metadata(d).tables[table].insert(), list(rows))


async def select_all(engine: AsyncEngine, d: Design, table: str) -> list[dict[str, Any]]:
    t = build_metadata(d).tables[table]
    async with engine.connect() as conn:
        result = await conn.execute(sa.select(t).order_by(t.c.created_at, t.c.id))
        return [dict(r._mapping) for r in result]


async def columns(engine: AsyncEngine, table: str) -> set[str]:
    async with engine.connect() as conn:
        found = await conn.run_sync(lambda c: sa.inspect(c).get_columns(table))
    return {c["name"] for c in found}


async def tables(engine: AsyncEngine) -> set[str]:
    async with engine.connect() as conn:
        return set(await conn.run_sync(lambda c: sa.inspect(c).get_table_names()))


def only(plan: MigrationPlan) -> MigrationStep:
    assert len(plan.steps) == 1, plan.steps
    return plan.steps[0]


async def test_an_empty_database_gets_safe_create_table_steps_and_is_current_after_apply(
    engine,
):
    d = design(posts(), likes())
    plan = await plan_migration(engine, d)
    descriptions = [s.description for s in plan.steps]
    for table in ("posts", "likes", "charpente_idempotency", HISTORY_TABLE):
        assert f"create table {table}" in descriptions
    assert "create index ix_likes_post on likes (post, id)" in descriptions
    assert plan.only_safe
    assert not plan.has_destructive
    assert not any(s.breaking for s in plan.steps)
    assert not await database_is_current(engine, d)

    applied = await apply_migration(engine, d, only_safe=True)

    assert applied == plan
    assert (await plan_migration(engine, d)).is_empty
    assert await database_is_current(engine, d)


async def test_adding_a_nullable_field_is_one_safe_step(engine):
    await apply_migration(engine, design(posts()))
    d2 = design(posts(Field("body", Kind.TEXT)))

    step = only(await plan_migration(engine, d2))

    assert step == MigrationStep("add column posts.body (text, nullable)", Safety.SAFE)
    await apply_migration(engine, d2, only_safe=True)
    assert "body" in await columns(engine, "posts")
    assert (await plan_migration(engine, d2)).is_empty


async def test_adding_a_descending_composite_index_is_safe_and_leaves_nothing_to_plan(engine):
    await apply_migration(engine, design(posts()))
    index = Index((IndexColumn("title"), IndexColumn("created_at", descending=True)))
    d2 = design(posts(indexes=(index,)))

    step = only(await plan_migration(engine, d2))

    assert step.safety is Safety.SAFE
    assert step.description == (
        "create index ix_posts_title_created_at_desc on posts (title, created_at desc, id desc)"
    )
    await apply_migration(engine, d2, only_safe=True)
    assert (await plan_migration(engine, d2)).is_empty


async def test_the_same_fields_indexed_in_both_directions_get_two_indexes(engine):
    ascending = Index((IndexColumn("title"), IndexColumn("created_at")))
    descending = Index((IndexColumn("title"), IndexColumn("created_at", descending=True)))
    d = design(posts(indexes=(ascending, descending)))

    await apply_migration(engine, d)

    async with engine.connect() as conn:
        found = await conn.run_sync(lambda c: sa.inspect(c).get_indexes("posts"))
    names = {i["name"] for i in found}
    assert {"ix_posts_title_created_at", "ix_posts_title_created_at_desc"} <= names
    assert (await plan_migration(engine, d)).is_empty


async def test_an_index_name_over_63_characters_is_cut_with_a_hash_and_replans_empty(engine):
    recipient = Field("recipient_account_id", Kind.UUID, required=True)
    index = Index((IndexColumn("recipient_account_id"), IndexColumn("created_at", True)))
    other = Index((IndexColumn("recipient_account_id"), IndexColumn("created_at")))
    resource = Resource("notifications_for_subscribers", (recipient,), indexes=(index, other))
    d = design(resource)
    names = {i.name for i in build_metadata(d).tables[resource.name].indexes}
    assert all(isinstance(n, str) and len(n) <= 63 for n in names)
    assert len(names) == 2

    await apply_migration(engine, d)

    assert (await plan_migration(engine, d)).is_empty


async def test_a_required_field_with_a_default_is_safe_and_fills_existing_rows(engine):
    d1 = design(posts())
    await apply_migration(engine, d1)
    await insert(engine, d1, "posts", row(title="a"), row(title="b"))
    rank = Field("rank", Kind.INT, required=True, default=Default(7))
    mood = Field("mood", Kind.STRING, required=True, default=Default("it's fine"))
    d2 = design(posts(rank, mood))

    plan = await plan_migration(engine, d2)

    assert plan.only_safe, plan.steps
    await apply_migration(engine, d2, only_safe=True)
    stored = await select_all(engine, d2, "posts")
    assert [(r["rank"], r["mood"]) for r in stored] == [(7, "it's fine")] * 2
    assert (await plan_migration(engine, d2)).is_empty


async def test_a_required_field_without_default_on_a_table_with_rows_needs_a_backfill(engine):
    d1 = design(posts())
    await apply_migration(engine, d1)
    await insert(engine, d1, "posts", row(title="a"))
    d2 = design(posts(Field("body", Kind.TEXT, required=True)))

    step = only(await plan_migration(engine, d2))

    assert step.safety is Safety.BACKFILL
    assert step.breaking
    with pytest.raises(MigrationError, match=r"add column posts\.body"):
        await apply_migration(engine, d2, only_safe=True)
    with pytest.raises(MigrationError, match="default"):
        await apply_migration(engine, d2)
    assert "body" not in await columns(engine, "posts")


async def test_a_required_field_without_default_on_an_empty_table_is_safe(engine):
    await apply_migration(engine, design(posts()))
    d2 = design(posts(Field("body", Kind.TEXT, required=True)))

    assert only(await plan_migration(engine, d2)).safety is Safety.SAFE
    await apply_migration(engine, d2, only_safe=True)
    assert (await plan_migration(engine, d2)).is_empty


async def test_dropping_a_field_is_destructive_and_refused_without_the_flag(engine):
    body = Field("body", Kind.TEXT)
    d1 = design(posts(body), likes())
    await apply_migration(engine, d1)
    post = row(title="kept", body="precious")
    await insert(engine, d1, "posts", post)
    await insert(engine, d1, "likes", row(post=post["id"]))
    d2 = design(posts(), likes())

    step = only(await plan_migration(engine, d2))

    assert step.safety is Safety.DESTRUCTIVE
    assert step.breaking
    with pytest.raises(MigrationError, match="--allow-destructive"):
        await apply_migration(engine, d2)
    assert [r["body"] for r in await select_all(engine, d1, "posts")] == ["precious"]

    await apply_migration(engine, d2, allow_destructive=True)

    assert "body" not in await columns(engine, "posts")
    assert [r["title"] for r in await select_all(engine, d2, "posts")] == ["kept"]
    assert len(await select_all(engine, d2, "likes")) == 1
    assert (await plan_migration(engine, d2)).is_empty


async def test_removing_a_resource_is_destructive_and_breaking(engine):
    d1 = design(posts(), likes())
    await apply_migration(engine, d1)
    d2 = design(posts())

    plan = await plan_migration(engine, d2)

    assert [(s.description, s.safety, s.breaking) for s in plan.steps] == [
        ("drop table likes (its rows are lost)", Safety.DESTRUCTIVE, True)
    ]
    with pytest.raises(MigrationError, match="drop table likes"):
        await apply_migration(engine, d2, only_safe=True)
    await apply_migration(engine, d2, allow_destructive=True)
    assert "likes" not in await tables(engine)
    assert (await plan_migration(engine, d2)).is_empty


async def test_a_table_someone_else_created_is_never_touched(engine):
    legacy = sa.Table("legacy", sa.MetaData(), sa.Column("n", sa.Integer, primary_key=True))
    async with engine.begin() as conn:
        await conn.run_sync(legacy.create)
        await conn.execute(legacy.insert(), [{"n": 1}, {"n": 2}])
    d = design(posts())

    plan = await plan_migration(engine, d)

    assert not any("legacy" in s.description for s in plan.steps)
    await apply_migration(engine, d, only_safe=True)
    assert (await plan_migration(engine, d)).is_empty
    async with engine.connect() as conn:
        assert (await conn.execute(sa.select(sa.func.count()).select_from(legacy))).scalar() == 2


async def test_the_history_table_records_each_apply_with_its_design_and_steps(engine):
    d1 = design(posts())
    d2 = design(posts(Field("body", Kind.TEXT)))
    await apply_migration(engine, d1)
    await apply_migration(engine, d2)
    await apply_migration(engine, d2)  # nothing to do: not recorded again

    history = sa.table(
        HISTORY_TABLE,
        sa.column("id"),
        sa.column("applied_at"),
        sa.column("design"),
        sa.column("steps"),
    )
    async with engine.connect() as conn:
        rows = (await conn.execute(sa.select(history).order_by(history.c.id))).all()

    assert [design_from_json(r.design) for r in rows] == [d1, d2]
    assert json.loads(rows[1].steps) == ["add column posts.body (text, nullable)"]
    assert "create table posts" in json.loads(rows[0].steps)
    assert all(r.applied_at is not None for r in rows)


async def test_an_enum_losing_a_value_and_a_shorter_max_length_are_breaking(engine):
    d1 = design(posts())
    await apply_migration(engine, d1)
    narrower = Field("visibility", Kind.ENUM, choices=("public", "private"))
    shorter = Field("title", Kind.STRING, required=True, max_length=100)
    d2 = design(Resource("posts", (shorter, narrower)))

    plan = await plan_migration(engine, d2)

    assert sorted(s.description for s in plan.steps) == [
        "posts.title: max_length shrank from 200 to 100 (no database change)",
        "posts.visibility: enum lost 'followers' (no database change)",
    ]
    assert all(s.breaking and s.safety is Safety.SAFE for s in plan.steps)
    assert not await database_is_current(engine, d2)
    await apply_migration(engine, d2, only_safe=True)
    assert (await plan_migration(engine, d2)).is_empty


async def test_a_new_counter_is_added_safely_and_backfilled_with_the_real_counts(engine):
    d1 = design(posts(), likes())
    await apply_migration(engine, d1)
    first, second = row(title="liked"), row(title="ignored")
    await insert(engine, d1, "posts", first, second)
    await insert(engine, d1, "likes", row(post=first["id"]), row(post=first["id"]))
    counter = Field("like_count", Kind.COUNT, count=CountSource("likes", "post"))
    d2 = design(posts(counter), likes())

    step = only(await plan_migration(engine, d2))

    assert step.safety is Safety.SAFE
    await apply_migration(engine, d2, only_safe=True)
    counts = {r["title"]: r["like_count"] for r in await select_all(engine, d2, "posts")}
    assert counts == {"liked": 2, "ignored": 0}
    assert (await plan_migration(engine, d2)).is_empty


async def test_a_field_becoming_required_needs_a_backfill_and_names_the_rows_missing_it(engine):
    d1 = design(posts(Field("body", Kind.TEXT)))
    await apply_migration(engine, d1)
    await insert(engine, d1, "posts", row(title="a"))
    d2 = design(posts(Field("body", Kind.TEXT, required=True)))

    step = only(await plan_migration(engine, d2))

    assert (step.description, step.safety, step.breaking) == (
        "make posts.body required (not null)",
        Safety.BACKFILL,
        True,
    )
    unique_body = design(posts(Field("body", Kind.TEXT, unique=True)))
    unique_step = only(await plan_migration(engine, unique_body))  # not twice: db and design
    assert (unique_step.description, unique_step.breaking) == (
        "add unique constraint on posts (body)",
        True,
    )
    with pytest.raises(MigrationError, match="1 row has no value"):
        await apply_migration(engine, d2)


async def test_a_new_reference_and_a_unique_field_on_a_table_with_rows(engine):
    d1 = design(posts(), Resource("tags", (Field("label", Kind.STRING),)))
    await apply_migration(engine, d1)
    await insert(engine, d1, "posts", row(title="a"))
    tag = Field("tag", Kind.REF, ref="tags", on_delete=OnDelete.SET_NULL)
    slug = Field("slug", Kind.STRING, unique=True)
    d2 = design(posts(tag, slug), Resource("tags", (Field("label", Kind.STRING),)))

    plan = await plan_migration(engine, d2)

    assert plan.only_safe, plan.steps
    await apply_migration(engine, d2, only_safe=True)
    assert (await plan_migration(engine, d2)).is_empty
    d3 = design(
        posts(
            tag, slug, Field("code", Kind.STRING, unique=True, required=True, default=Default("x"))
        ),
        Resource("tags", (Field("label", Kind.STRING),)),
    )
    unique_step = [s for s in (await plan_migration(engine, d3)).steps if "unique" in s.description]
    assert [s.safety for s in unique_step] == [Safety.BACKFILL]


async def test_sqlite_foreign_keys_are_enforced_again_after_a_table_is_recreated(tmp_path):
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'fk.db'}")
    try:
        d1 = design(posts(Field("body", Kind.TEXT)), likes())
        await apply_migration(engine, d1)
        await apply_migration(engine, design(posts(), likes()), allow_destructive=True)
        async with engine.connect() as conn:
            assert (await conn.exec_driver_sql("PRAGMA foreign_keys")).scalar() == 1
        with pytest.raises(sa.exc.IntegrityError):
            await insert(engine, d1, "likes", row(post=str(uuid.uuid4())))
    finally:
        await engine.dispose()


async def test_a_failing_step_rolls_back_every_step_before_it(db_target):
    # A plain engine too: without the engine's BEGIN hook, SQLite DDL must still be atomic.
    connect_args = (
        {"server_settings": {"search_path": db_target.schema}} if db_target.schema else {}
    )
    plain = create_async_engine(db_target.url, connect_args=connect_args)
    try:
        d1 = design(posts())
        await apply_migration(plain, d1)
        await insert(plain, d1, "posts", row(title="twin"), row(title="twin"))
        unique_title = Field("title", Kind.STRING, required=True, max_length=200, unique=True)
        tags = Resource("tags", (Field("label", Kind.STRING),))
        d2 = design(Resource("posts", (unique_title, VISIBILITY, Field("body", Kind.TEXT))), tags)
        assert [s.safety for s in (await plan_migration(plain, d2)).steps].count(
            Safety.BACKFILL
        ) == 1

        with pytest.raises(MigrationError, match="failed"):
            await apply_migration(plain, d2)

        assert "tags" not in await tables(plain)
        assert "body" not in await columns(plain, "posts")
        assert len(await select_all(plain, d1, "posts")) == 2
    finally:
        await plain.dispose()


async def test_processes_migrating_at_once_apply_the_steps_once(engine):
    d = design(posts(), likes())

    plans = await asyncio.gather(*(apply_migration(engine, d) for _ in range(3)))

    assert sorted(len(p.steps) for p in plans)[:2] == [0, 0]
    assert (await plan_migration(engine, d)).is_empty
    history = sa.table(HISTORY_TABLE, sa.column("id"))
    async with engine.connect() as conn:
        assert (await conn.execute(sa.select(sa.func.count()).select_from(history))).scalar() == 1


async def test_a_required_json_field_with_a_default_fills_existing_rows(engine):
    d1 = design(posts())
    await apply_migration(engine, d1)
    await insert(engine, d1, "posts", row(title="a"))
    d2 = design(posts(Field("meta", Kind.JSON, required=True, default=Default({"k": ["v"]}))))

    await apply_migration(engine, d2, only_safe=True)

    assert [r["meta"] for r in await select_all(engine, d2, "posts")] == [{"k": ["v"]}]


async def test_the_social_template_replans_empty_and_its_snapshot_reads_back(engine):
    social = load_design_text(template_text("social"))

    plan = await apply_migration(engine, social, only_safe=True)

    assert plan.steps
    assert (await plan_migration(engine, social)).is_empty
    assert design_from_json(design_to_json(social)).resources == social.resources


async def test_every_kind_of_field_replans_empty_after_apply(engine):
    kinds = [k for k in Kind if k not in (Kind.ENUM, Kind.REF, Kind.COUNT)]
    fields = [Field(f"f_{k}", k, unique=k is not Kind.JSON) for k in kinds]
    fields.append(Field("f_money", Kind.DECIMAL, precision=10, scale=4, required=True))
    d = design(Resource("things", tuple(fields)), posts(), likes())

    await apply_migration(engine, d, only_safe=True)

    assert (await plan_migration(engine, d)).steps == ()


async def test_resources_that_refer_to_each_other_are_created_together(engine):
    pinned = Field("pinned", Kind.REF, ref="posts", on_delete=OnDelete.SET_NULL)
    accounts = Resource("accounts", (Field("handle", Kind.STRING), pinned))
    author = Field("author", Kind.REF, ref="accounts", on_delete=OnDelete.CASCADE)
    d = design(accounts, posts(author))

    await apply_migration(engine, d, only_safe=True)

    assert (await plan_migration(engine, d)).is_empty


async def test_an_unreadable_recorded_design_is_a_clear_migration_error(engine):
    await apply_migration(engine, design(posts()))
    history = sa.table(HISTORY_TABLE, sa.column("design"))
    async with engine.begin() as conn:
        await conn.execute(history.update().values(design='{"format": 99}'))

    with pytest.raises(MigrationError, match="another version of charpente"):
        await plan_migration(engine, design(posts()))


# --- the design diff (pure) ---------------------------------------------------------------


def test_a_rename_reads_as_a_removal_and_an_addition_and_breaks_clients():
    old = design(posts(Field("body", Kind.TEXT)))
    new = design(posts(Field("content", Kind.TEXT)))

    changes = diff_designs(old, new)

    assert [(c.field, c.what, c.breaking) for c in changes] == [
        ("body", "removed", True),
        ("content", "added (text, optional)", False),
    ]


@pytest.mark.parametrize(
    ("before", "after", "breaking"),
    [
        (Field("n", Kind.INT), Field("n", Kind.TEXT), True),
        (Field("n", Kind.INT), Field("n", Kind.INT, required=True), True),
        (Field("n", Kind.INT, required=True), Field("n", Kind.INT), False),
        (Field("n", Kind.INT, maximum=10), Field("n", Kind.INT, maximum=20), False),
        (Field("n", Kind.INT, minimum=1), Field("n", Kind.INT, minimum=5), True),
        (Field("n", Kind.TEXT), Field("n", Kind.TEXT, pattern="^a"), True),
        (Field("n", Kind.ENUM, choices=("a",)), Field("n", Kind.ENUM, choices=("a", "b")), False),
        (Field("n", Kind.TEXT), Field("n", Kind.TEXT, writeonly=True), True),
    ],
)
def test_field_changes_are_breaking_only_when_v1_clients_can_fail(before, after, breaking):
    changes = diff_designs(design(posts(before)), design(posts(after)))

    assert changes
    assert any(c.breaking for c in changes) is breaking


def test_a_first_design_only_adds_resources():
    changes = diff_designs(None, design(posts(), likes()))

    assert [(c.resource, c.what, c.breaking) for c in changes] == [
        ("posts", "added", False),
        ("likes", "added", False),
    ]


def test_a_snapshot_reads_back_as_the_same_design():
    from charpente.design.expr import Compare, Literal, Name
    from charpente.design.model import Check

    price = Field("price", Kind.DECIMAL, default=Default(decimal.Decimal("1.50")))
    day = Field("day", Kind.DATE, default=Default(datetime.date(2024, 2, 29)))
    meta = Field("meta", Kind.JSON, default=Default({"tags": ["a"]}))
    check = Check("price > 0", Compare(">", Name(("price",)), Literal(0)))
    d = design(posts(price, day, meta, checks=(check,), unique=(("title", "day"),)), likes())

    text = design_to_json(d)

    assert design_from_json(text) == d
    assert design_to_json(design_from_json(text)) == text


async def test_renamed_from_is_one_rename_that_keeps_the_values_on_both_dialects(engine):
    d1 = design(posts(Field("body", Kind.TEXT)))
    await apply_migration(engine, d1)
    await insert(engine, d1, "posts", row(title="a", body="kept"))
    d2 = design(posts(Field("text", Kind.TEXT, renamed_from="body")))

    step = only(await plan_migration(engine, d2))

    assert (step.description, step.safety, step.breaking) == (
        "rename column posts.body to posts.text (its values are kept)",
        Safety.SAFE,
        True,
    )
    await apply_migration(engine, d2, only_safe=True)
    assert [r["text"] for r in await select_all(engine, d2, "posts")] == ["kept"]
    assert (await plan_migration(engine, d2)).is_empty


async def test_a_resource_renamed_from_another_is_refused_rather_than_dropped(engine):
    await apply_migration(engine, design(posts()))
    articles = Resource("articles", (TITLE, VISIBILITY), renamed_from="posts")

    with pytest.raises(MigrationError, match="renaming a table is not supported yet"):
        await apply_migration(engine, design(articles), allow_destructive=True)

    assert "posts" in await tables(engine)
