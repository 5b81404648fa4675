"""A new index on an existing PostgreSQL table is built CONCURRENTLY, after the migration's
transaction; a failed build leaves no INVALID index behind, and a later run builds it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from charpente.errors import MigrationError
from charpente.loader import load_design_text
from charpente.sql.engine import create_engine
from charpente.sql.migrate import apply_migration, database_is_current

pytestmark = pytest.mark.anyio

BEFORE = """
charpente: 1
name: blog
resources:
  posts:
    access: {read: true}
    fields:
      title: {type: string, required: true}
"""
AFTER = BEFORE + "    indexes: [[title, -created_at]]\n"
UNIQUE = BEFORE + "    indexes: [{fields: [title], unique: true}]\n"


@pytest.fixture
async def engine(pg_target: Any) -> AsyncIterator[AsyncEngine]:
    created = create_engine(pg_target.url, schema=pg_target.schema)
    try:
        yield created
    finally:
        await created.dispose()


def _recorder(engine: AsyncEngine) -> list[str]:
    statements: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        statements.append(statement)

    sa.event.listen(engine.sync_engine, "before_cursor_execute", record)
    return statements


async def _indexes(engine: AsyncEngine) -> dict[str, bool]:
    async with engine.connect() as conn:
        found = await conn.execute(
            sa.text(
                "SELECT c.relname, i.indisvalid FROM pg_index i "
                "JOIN pg_class c ON c.oid = i.indexrelid "
                "WHERE c.relnamespace = current_schema()::regnamespace "
                "AND c.relname LIKE 'ix_posts_%'"
            )
        )
        return {str(name): bool(valid) for name, valid in found}


async def _seed(engine: AsyncEngine, titles: list[str]) -> None:
    await apply_migration(engine, load_design_text(BEFORE))
    async with engine.begin() as conn:
        for i, title in enumerate(titles):
            await conn.execute(
                sa.text(
                    "INSERT INTO posts (id, title, created_at, updated_at, version) "
                    "VALUES (:id, :title, now(), now(), 1)"
                ),
                {"id": f"00000000-0000-7000-8000-{i:012d}", "title": title},
            )


async def test_an_index_on_an_existing_table_is_built_concurrently(engine: AsyncEngine) -> None:
    await _seed(engine, ["a", "b"])
    statements = _recorder(engine)
    await apply_migration(engine, load_design_text(AFTER))
    built = [s for s in statements if s.startswith("CREATE INDEX")]
    assert built == [
        "CREATE INDEX CONCURRENTLY ix_posts_title_created_at_desc "
        "ON posts (title, created_at DESC, id DESC)"
    ]
    assert await _indexes(engine) == {"ix_posts_title_created_at_desc": True}
    assert await database_is_current(engine, load_design_text(AFTER))


async def test_a_new_tables_indexes_are_built_in_the_transaction(engine: AsyncEngine) -> None:
    statements = _recorder(engine)
    await apply_migration(engine, load_design_text(AFTER))
    assert not any("CONCURRENTLY" in s for s in statements)
    assert await _indexes(engine) == {"ix_posts_title_created_at_desc": True}


async def test_a_failed_build_leaves_no_invalid_index_and_can_be_run_again(
    engine: AsyncEngine,
) -> None:
    await _seed(engine, ["same", "same"])
    with pytest.raises(MigrationError, match="rows share the same value; fix them first"):
        await apply_migration(engine, load_design_text(UNIQUE))
    assert await _indexes(engine) == {}
    async with engine.begin() as conn:
        await conn.execute(sa.text("UPDATE posts SET title = id::text"))
    await apply_migration(engine, load_design_text(UNIQUE))
    assert await _indexes(engine) == {"ix_posts_title": True}
    assert await database_is_current(engine, load_design_text(UNIQUE))


async def test_two_migrations_starting_together_take_turns(
    engine: AsyncEngine, pg_target: Any
) -> None:
    # The second waits for the first's lock while the first builds CONCURRENTLY, which waits
    # for every older snapshot: waiting in a blocked statement would be a deadlock.
    await _seed(engine, ["a", "b"])
    other = create_engine(pg_target.url, schema=pg_target.schema)
    try:
        design = load_design_text(AFTER)
        await asyncio.gather(apply_migration(engine, design), apply_migration(other, design))
    finally:
        await other.dispose()
    assert await _indexes(engine) == {"ix_posts_title_created_at_desc": True}
    assert await database_is_current(engine, load_design_text(AFTER))
