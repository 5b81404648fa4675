"""Zero-downtime forms of migration steps on PostgreSQL tables that hold rows."""

from __future__ import annotations

import asyncio
import datetime
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
import sqlalchemy as sa
from alembic.operations import ops
from sqlalchemy.ext.asyncio import AsyncEngine

from charpente.design.model import Design, Field, Index, IndexColumn, Kind, OnDelete, Resource
from charpente.errors import MigrationError
from charpente.sql.engine import create_engine
from charpente.sql.migrate import apply_migration, plan_migration
from charpente.sql.schema import build_metadata

pytestmark = pytest.mark.anyio

CONSTRAINTS = (
    "SELECT {} FROM pg_constraint "
    "WHERE connamespace = current_schema()::regnamespace AND contype = '{}'"
)
COLUMN = (
    "SELECT {} FROM information_schema.columns "
    "WHERE table_schema = current_schema() AND table_name = 'posts' AND column_name = 'body'"
)
TITLE = Field("title", Kind.STRING, required=True, max_length=200)


def design(*resources: Resource) -> Design:
    return Design("social", 1, {r.name: r for r in resources})


def posts(*fields: Field, **options: Any) -> Resource:
    return Resource("posts", (TITLE, *fields), **options)


@pytest.fixture
async def engine(pg_target) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(pg_target.url, schema=pg_target.schema)
    yield engine
    await engine.dispose()


def row(**values: Any) -> dict[str, Any]:
    now = datetime.datetime.now(datetime.UTC)
    return {"id": str(uuid.uuid4()), "created_at": now, "updated_at": now, "version": 1} | values


async def insert(engine: AsyncEngine, d: Design, table: str, *rows: dict[str, Any]) -> None:
    async with engine.begin() as conn:
        await conn.execute(build_metadata(d).tables[table].insert(), list(rows))


async def scalar(engine: AsyncEngine, sql: str) -> Any:
    async with engine.connect() as conn:
        return (await conn.exec_driver_sql(sql)).scalar()


async def invalid_count(engine: AsyncEngine) -> int:
    """INVALID indexes in the test's own schema (other tests share the database)."""
    return int(
        await scalar(
            engine,
            "SELECT count(*) FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid "
            "WHERE NOT x.indisvalid AND i.relnamespace = current_schema()::regnamespace",
        )
    )


async def execute(engine: AsyncEngine, sql: str) -> None:
    async with engine.connect() as conn:
        await conn.execution_options(isolation_level="AUTOCOMMIT")
        await conn.exec_driver_sql(sql)


async def test_an_index_on_a_table_with_rows_is_built_concurrently_and_valid(engine):
    d1 = design(posts())
    await apply_migration(engine, d1)
    await insert(engine, d1, "posts", row(title="a"), row(title="b"))
    d2 = design(posts(indexes=(Index((IndexColumn("title"),)),)))

    plan = await plan_migration(engine, d2)

    (step,) = plan.steps
    assert step.lock is not None
    assert "CONCURRENTLY after the commit" in step.lock
    assert any("CREATE INDEX CONCURRENTLY" in d.sql for d in step.after)
    await apply_migration(engine, d2, only_safe=True)
    assert (await plan_migration(engine, d2)).is_empty
    assert await invalid_count(engine) == 0


async def test_an_index_on_an_empty_table_is_built_in_the_transaction(engine):
    await apply_migration(engine, design(posts()))

    (step,) = (
        await plan_migration(engine, design(posts(indexes=(Index((IndexColumn("title"),)),))))
    ).steps

    assert step.lock is None
    assert not step.after


async def test_an_invalid_leftover_of_an_interrupted_build_is_dropped_and_rebuilt(engine):
    d1 = design(posts())
    await apply_migration(engine, d1)
    await insert(engine, d1, "posts", row(title="twin"), row(title="twin"))
    d2 = design(posts(indexes=(Index((IndexColumn("title"),)),)))
    (planned,) = (await plan_migration(engine, d2)).steps
    assert isinstance(planned.operation, ops.CreateIndexOp)
    name = planned.operation.index_name
    with pytest.raises(sa.exc.IntegrityError):  # a build that fails leaves an INVALID index
        await execute(engine, f'CREATE UNIQUE INDEX CONCURRENTLY "{name}" ON posts (title)')
    assert await invalid_count(engine) == 1

    steps = (await plan_migration(engine, d2)).steps

    assert [s.description for s in steps] == [planned.description], steps
    (step,) = steps
    assert step.lock is not None
    assert "INVALID index" in step.lock
    await apply_migration(engine, d2)
    assert await invalid_count(engine) == 0
    assert (await plan_migration(engine, d2)).is_empty


async def test_a_unique_field_on_a_table_with_rows_gets_a_concurrent_index_then_a_constraint(
    engine,
):
    d1 = design(posts(Field("slug", Kind.STRING)))
    await apply_migration(engine, d1)
    await insert(engine, d1, "posts", row(title="a", slug="a"), row(title="b", slug="b"))
    d2 = design(posts(Field("slug", Kind.STRING, unique=True)))

    (step,) = (await plan_migration(engine, d2)).steps

    assert step.lock is not None
    assert "CONCURRENTLY" in step.lock
    await apply_migration(engine, d2)
    assert (await plan_migration(engine, d2)).is_empty
    assert (
        await scalar(
            engine,
            CONSTRAINTS.format("count(*)", "u"),
        )
        == 1
    )
    with pytest.raises(sa.exc.IntegrityError):
        await insert(engine, d2, "posts", row(title="c", slug="a"))


async def test_duplicates_stop_a_unique_constraint_before_anything_is_committed(engine):
    d1 = design(posts(Field("slug", Kind.STRING)))
    await apply_migration(engine, d1)
    await insert(engine, d1, "posts", row(title="a", slug="x"), row(title="b", slug="x"))
    d2 = design(posts(Field("slug", Kind.STRING, unique=True), Field("body", Kind.TEXT)))

    with pytest.raises(MigrationError, match="failed: 2 rows share the same value"):
        await apply_migration(engine, d2)

    assert await invalid_count(engine) == 0
    columns = COLUMN.format("count(*)")
    assert await scalar(engine, columns) == 0


async def test_a_reference_on_a_table_with_rows_is_added_not_valid_then_validated(engine):
    tags = Resource("tags", (Field("label", Kind.STRING),))
    d1 = design(posts(Field("tag", Kind.UUID)), tags)
    await apply_migration(engine, d1)
    tag = row(label="x")
    await insert(engine, d1, "tags", tag)
    await insert(engine, d1, "posts", row(title="a", tag=tag["id"]))
    ref = Field("tag", Kind.REF, ref="tags", on_delete=OnDelete.SET_NULL)
    d2 = design(posts(ref), tags)

    steps = (await plan_migration(engine, d2)).steps

    fk = next(s for s in steps if isinstance(s.operation, ops.CreateForeignKeyOp))
    assert fk.lock is not None
    assert "NOT VALID" in fk.lock
    await apply_migration(engine, d2, allow_destructive=True)
    validated = CONSTRAINTS.format("bool_and(convalidated)", "f")
    assert await scalar(engine, validated) is True
    assert (await plan_migration(engine, d2)).is_empty


async def test_a_reference_left_unvalidated_by_a_crash_is_validated_by_the_next_apply(engine):
    tags = Resource("tags", (Field("label", Kind.STRING),))
    ref = Field("tag", Kind.REF, ref="tags", on_delete=OnDelete.SET_NULL)
    d = design(posts(ref), tags)
    await apply_migration(engine, d)
    name = await scalar(
        engine,
        CONSTRAINTS.format("conname", "f"),
    )
    await execute(engine, f'ALTER TABLE posts DROP CONSTRAINT "{name}"')
    await execute(
        engine,
        f'ALTER TABLE posts ADD CONSTRAINT "{name}" FOREIGN KEY (tag) REFERENCES tags (id) '
        "ON DELETE SET NULL NOT VALID",
    )

    (step,) = (await plan_migration(engine, d)).steps

    assert (
        step.description
        == f"validate foreign key {name} on posts (left unvalidated by an interrupted migration)"
    )
    await apply_migration(engine, d, only_safe=True)
    assert await scalar(
        engine,
        CONSTRAINTS.format("convalidated", "f"),
    )
    assert (await plan_migration(engine, d)).is_empty


async def test_set_not_null_goes_through_a_validated_check_and_leaves_none_behind(engine):
    d1 = design(posts(Field("body", Kind.TEXT)))
    await apply_migration(engine, d1)
    await insert(engine, d1, "posts", row(title="a", body="x"))
    d2 = design(posts(Field("body", Kind.TEXT, required=True)))

    (step,) = (await plan_migration(engine, d2)).steps

    assert step.lock is not None
    assert "NOT VALID" in step.lock
    await apply_migration(engine, d2)
    nullable = COLUMN.format("is_nullable")
    assert await scalar(engine, nullable) == "NO"
    assert (
        await scalar(
            engine,
            CONSTRAINTS.format("count(*)", "c"),
        )
        == 0
    )
    assert (await plan_migration(engine, d2)).is_empty


async def test_a_type_change_on_a_table_with_rows_names_the_expand_contract_path(engine):
    d1 = design(posts(Field("score", Kind.INT)))
    await apply_migration(engine, d1)
    await insert(engine, d1, "posts", row(title="a", score=1))

    (step,) = (await plan_migration(engine, design(posts(Field("score", Kind.STRING))))).steps

    assert step.lock is not None
    assert "renamed_from" in step.lock
    assert "migrate start" in step.lock


async def test_a_long_transaction_makes_the_exclusive_statement_retry_not_block_writers(engine):
    d1 = design(posts(Field("body", Kind.TEXT)))
    await apply_migration(engine, d1)
    await insert(engine, d1, "posts", row(title="a", body="x"))
    d2 = design(posts(Field("body", Kind.TEXT, required=True)))
    table = build_metadata(d1).tables["posts"]
    waits: list[float] = []

    async with engine.connect() as holder:
        await holder.execute(sa.select(table.c.id))  # holds a lock until its transaction ends
        migration = asyncio.create_task(apply_migration(engine, d2))
        for _ in range(8):  # writers keep going while the migration waits its turn
            started = time.monotonic()
            await insert(engine, d1, "posts", row(title="w", body="y"))
            waits.append(time.monotonic() - started)
            await asyncio.sleep(0.15)
        assert not migration.done()
        await holder.rollback()
    await migration

    assert max(waits) < 0.9, waits  # a writer waits at most one bounded attempt (500 ms)
    nullable = COLUMN.format("is_nullable")
    assert await scalar(engine, nullable) == "NO"
