"""Renames with no downtime on PostgreSQL: `migrate start`, both designs side by side,
`migrate complete` once no process of the old design runs; a crash of `start` resumes."""

from __future__ import annotations

import asyncio
import datetime
import json
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from charpente.design.model import Design
from charpente.errors import MigrationError
from charpente.loader import load_design_text
from charpente.runtime.caller import SYSTEM
from charpente.runtime.service import Service
from charpente.sql.database import SqlDatabase
from charpente.sql.engine import create_engine
from charpente.sql.migrate import apply_migration, database_is_current
from charpente.sql.presence import Presence
from charpente.sql.renames import complete_migration, start_migration
from charpente.sql.schema import build_metadata

pytestmark = pytest.mark.anyio

OLD = """\
charpente: 1
name: blog
resources:
  posts:
    fields:
      headline: {type: string, required: true, max_length: 200}
      score: int
"""
NEW = """\
charpente: 1
name: blog
resources:
  posts:
    fields:
      title: {type: string, required: true, max_length: 200, renamed_from: headline}
      score: int
"""


@pytest.fixture
async def engine(pg_target) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(pg_target.url, schema=pg_target.schema)
    yield engine
    await engine.dispose()


async def fill(engine: AsyncEngine, design: Design, count: int) -> None:
    now = datetime.datetime.now(datetime.UTC)
    rows = [
        {
            "id": str(uuid.uuid4()),
            "created_at": now,
            "updated_at": now,
            "version": 1,
            "headline": f"post {n}",
            "score": n,
        }
        for n in range(count)
    ]
    async with engine.begin() as conn:
        await conn.execute(build_metadata(design).tables["posts"].insert(), rows)


async def scalar(engine: AsyncEngine, sql: str) -> Any:
    async with engine.connect() as conn:
        return (await conn.exec_driver_sql(sql)).scalar()


TRIGGERS = (
    "SELECT count(*) FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid WHERE c.relname = "
    "'posts' AND c.relnamespace = current_schema()::regnamespace AND NOT t.tgisinternal"
)
SLOW_UPDATES = (
    "CREATE FUNCTION slow_updates() RETURNS trigger LANGUAGE plpgsql AS "
    "$$ BEGIN PERFORM pg_sleep(0.3); RETURN NULL; END $$",
    "CREATE TRIGGER slow_updates AFTER UPDATE ON posts "
    "FOR EACH STATEMENT EXECUTE FUNCTION slow_updates()",
)


async def execute(engine: AsyncEngine, *statements: str) -> None:
    async with engine.begin() as conn:
        for statement in statements:
            await conn.exec_driver_sql(statement)


async def done_batches(engine: AsyncEngine) -> int:
    """How many rows the backfill has saved as done (0 before it starts)."""
    if not await scalar(engine, "SELECT to_regclass('charpente_expansions') IS NOT NULL"):
        return 0
    progress = await scalar(
        engine, "SELECT progress FROM charpente_expansions ORDER BY id DESC LIMIT 1"
    )
    if not progress or progress == "{}":
        return 0
    last = json.loads(progress)["posts.title"]
    return int(await scalar(engine, f"SELECT count(*) FROM posts WHERE id <= '{last}'")) // 1000


async def posts_columns(engine: AsyncEngine) -> dict[str, str]:
    async with engine.connect() as conn:
        found = await conn.exec_driver_sql(
            "SELECT column_name, is_nullable FROM information_schema.columns "
            "WHERE table_schema = current_schema() AND table_name = 'posts'"
        )
        return {str(name): str(nullable) for name, nullable in found.all()}


async def test_a_rename_runs_old_and_new_processes_side_by_side_then_completes(engine):
    old, new = load_design_text(OLD), load_design_text(NEW)
    await apply_migration(engine, old)
    await fill(engine, old, 2500)
    seen: list[tuple[str, int, int]] = []

    started = await start_migration(engine, new, lambda *p: seen.append(p))

    assert [(r.table, r.old, r.new) for r in started.renames] == [("posts", "headline", "title")]
    assert seen[0] == ("posts.title", 0, 2500)
    assert seen[-1] == ("posts.title", 2500, 2500)
    assert len(seen) == 4  # the start, then three batches of at most 1,000 rows
    assert (
        await scalar(engine, "SELECT count(*) FROM posts WHERE title IS DISTINCT FROM headline")
        == 0
    )
    assert await database_is_current(engine, old)  # both designs may serve
    assert await database_is_current(engine, new)
    assert (await apply_migration(engine, old, only_safe=True)).is_empty  # serve --migrate
    assert (await apply_migration(engine, new, only_safe=True)).is_empty
    assert (await start_migration(engine, new)).resumed  # a second start has nothing to do

    old_engine = create_engine(
        engine.url.render_as_string(hide_password=False),
        schema=await scalar(engine, "SELECT current_schema()"),
    )
    try:
        before = Service(old, SqlDatabase(old_engine, old))
        after = Service(new, SqlDatabase(engine, new))
        written_old = await before.create("posts", {"headline": "by an old process"}, caller=SYSTEM)
        written_new = await after.create("posts", {"title": "by a new process"}, caller=SYSTEM)
        assert written_old.item is not None
        assert written_new.item is not None
        old_id, new_id = written_old.item.record["id"], written_new.item.record["id"]
        assert (await after.get("posts", old_id, caller=SYSTEM)).record[
            "title"
        ] == "by an old process"
        assert (await before.get("posts", new_id, caller=SYSTEM)).record[
            "headline"
        ] == "by a new process"
        await after.update("posts", old_id, {"title": "edited by new"}, caller=SYSTEM)
        await before.update("posts", new_id, {"headline": "edited by old"}, caller=SYSTEM)
        assert (await before.get("posts", old_id, caller=SYSTEM)).record[
            "headline"
        ] == "edited by new"
        assert (await after.get("posts", new_id, caller=SYSTEM)).record["title"] == "edited by old"

        running_old = Presence(old_engine, old, every_s=0.2)
        await running_old.start()
        with pytest.raises(MigrationError, match="1 process of the old design is still running"):
            await complete_migration(engine, new)
        await running_old.stop()
    finally:
        await old_engine.dispose()

    dropped = await complete_migration(engine, new)

    assert [(r.old, r.new) for r in dropped] == [("headline", "title")]
    columns = await posts_columns(engine)
    assert "headline" not in columns
    assert columns["title"] == "NO"
    assert (
        await scalar(
            engine,
            TRIGGERS,
        )
        == 0
    )
    assert await scalar(engine, "SELECT count(*) FROM posts WHERE title = 'edited by new'") == 1
    assert await database_is_current(engine, new)
    assert not await database_is_current(engine, old)
    with pytest.raises(MigrationError, match="nothing to complete"):
        await complete_migration(engine, new)


async def test_a_process_that_stops_beating_is_forgotten_after_the_stale_delay(engine):
    old, new = load_design_text(OLD), load_design_text(NEW)
    await apply_migration(engine, old)
    await start_migration(engine, new)
    crashed = Presence(engine, old, every_s=60)
    await crashed.start()
    assert crashed._task is not None
    crashed._task.cancel()  # killed: no heartbeat, no goodbye

    with pytest.raises(MigrationError, match="still running"):
        await complete_migration(engine, new)
    await asyncio.sleep(0.6)
    await complete_migration(engine, new, stale_after_s=0.5)


async def test_start_refuses_on_a_design_with_no_rename_and_complete_before_start(engine):
    old = load_design_text(OLD)
    await apply_migration(engine, old)

    with pytest.raises(MigrationError, match="nothing to start"):
        await start_migration(engine, old)
    with pytest.raises(MigrationError, match="nothing to complete"):
        await complete_migration(engine, load_design_text(NEW))


async def test_another_design_cannot_be_applied_while_a_rename_is_under_way(engine):
    old, new = load_design_text(OLD), load_design_text(NEW)
    await apply_migration(engine, old)
    await start_migration(engine, new)
    other = load_design_text(NEW + "      body: text\n")

    with pytest.raises(MigrationError, match="a zero-downtime migration is under way"):
        await apply_migration(engine, other)


async def test_a_type_change_through_renamed_from_casts_both_ways(engine):
    old = load_design_text(OLD)
    new = load_design_text(
        OLD.replace("      score: int\n", "      rating: {type: decimal, renamed_from: score}\n")
    )
    await apply_migration(engine, old)
    await fill(engine, old, 30)

    await start_migration(engine, new)

    assert (
        await scalar(engine, "SELECT count(*) FROM posts WHERE rating IS DISTINCT FROM score") == 0
    )
    async with engine.begin() as conn:
        await conn.exec_driver_sql("UPDATE posts SET rating = 7.00 WHERE score = 3")
        await conn.exec_driver_sql("UPDATE posts SET score = 9 WHERE score = 4")
    assert await scalar(engine, "SELECT score FROM posts WHERE rating = 7") == 7
    assert str(await scalar(engine, "SELECT rating FROM posts WHERE score = 9")) == "9.00"
    await complete_migration(engine, new)
    assert "score" not in await posts_columns(engine)


async def test_a_start_killed_halfway_resumes_to_the_same_end_state(engine, pg_target, tmp_path):
    old, new = load_design_text(OLD), load_design_text(NEW)
    await apply_migration(engine, old)
    await fill(engine, old, 12_000)
    design_file = tmp_path / "design.yaml"
    design_file.write_text(NEW)
    env = os.environ | {
        "CHARPENTE_DATABASE_URL": pg_target.url,
        "CHARPENTE_DATABASE_SCHEMA": pg_target.schema,
    }
    charpente = str(Path(sys.executable).parent / "charpente")

    await execute(engine, *SLOW_UPDATES)  # each batch takes 0.3 s: time to kill it halfway
    process = subprocess.Popen(
        [charpente, "migrate", "start", "--design", str(design_file)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        for _ in range(300):
            await asyncio.sleep(0.1)
            assert process.poll() is None, process.communicate()
            if await done_batches(engine) >= 3:
                break
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    await execute(engine, "DROP TRIGGER slow_updates ON posts")

    halfway = await scalar(engine, "SELECT count(*) FROM posts WHERE title IS NOT NULL")
    assert 0 < halfway < 12_000
    assert await database_is_current(engine, old)  # old processes keep serving (and restart)
    assert (await apply_migration(engine, old, only_safe=True)).is_empty  # serve --migrate
    assert not await database_is_current(engine, new)  # new ones wait for the backfill
    with pytest.raises(MigrationError, match="a zero-downtime migration is under way"):
        await apply_migration(engine, new, allow_destructive=True)  # only complete drops
    seen: list[tuple[str, int, int]] = []

    resumed = await start_migration(engine, new, lambda *p: seen.append(p))

    assert resumed.resumed
    assert seen[0][1] >= 3000  # went on from the last batch saved, not from the start
    assert seen[-1] == ("posts.title", 12_000, 12_000)
    assert (
        await scalar(engine, "SELECT count(*) FROM posts WHERE title IS DISTINCT FROM headline")
        == 0
    )
    await complete_migration(engine, new)
    assert await scalar(engine, "SELECT count(*) FROM posts") == 12_000
    assert (await posts_columns(engine))["title"] == "NO"
