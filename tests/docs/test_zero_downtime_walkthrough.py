"""The rename walk-through of docs/migrations.md, run as written on PostgreSQL.

Its two designs are written to the files its commands name; each `$ charpente …` line runs
through the CLI and must print the lines under it (`…` matches anything). Between `start`
and `complete`, processes of both designs write and read each other's records; the first
`complete` runs while a process of the old design is registered, as the page shows.
"""

from __future__ import annotations

import asyncio
import datetime
import re
import shlex
import uuid
from pathlib import Path

import sqlalchemy as sa
from typer.testing import CliRunner

from charpente.cli.main import app
from charpente.design.diff import design_to_json
from charpente.loader import load_design_text
from charpente.runtime.caller import SYSTEM
from charpente.runtime.service import Service
from charpente.sql.database import SqlDatabase
from charpente.sql.engine import create_engine
from charpente.sql.presence import design_version, processes_table

PAGE = Path(__file__).resolve().parents[2] / "docs" / "migrations.md"
HEADING = "### Renaming a field with no downtime"
_FENCE = re.compile(r"^```(\w+)\n(.*?)^```$", re.MULTILINE | re.DOTALL)


def section() -> str:
    text = PAGE.read_text(encoding="utf-8")
    start = text.index(HEADING)
    end = text.find("\n## ", start)
    return text[start : end if end != -1 else None]


def blocks(kind: str) -> list[str]:
    return [body for info, body in _FENCE.findall(section()) if info == kind]


def sessions() -> list[tuple[list[str], list[str]]]:
    """Each `$ charpente …` command of the console blocks, with the lines it prints."""
    found: list[tuple[list[str], list[str]]] = []
    for block in blocks("console"):
        for line in block.splitlines():
            if line.startswith("$ "):
                found.append((shlex.split(line[2:]), []))
            else:
                found[-1][1].append(line)
    return found


def matches(expected: list[str], output: str) -> bool:
    lines = output.splitlines()
    at = 0
    for want in expected:
        if want == "…":
            continue
        pattern = re.compile(".*".join(re.escape(part) for part in want.split("…")))
        while at < len(lines) and not pattern.fullmatch(lines[at]):
            at += 1
        if at == len(lines):
            return False
        at += 1
    return True


def test_the_rename_walkthrough_runs_as_written(pg_target, tmp_path, monkeypatch) -> None:
    before, after = blocks("yaml")
    (tmp_path / "blog.yaml").write_text(before, encoding="utf-8")
    (tmp_path / "blog-v2.yaml").write_text(after, encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CHARPENTE_DATABASE_URL", pg_target.url)
    monkeypatch.setenv("CHARPENTE_DATABASE_SCHEMA", pg_target.schema)
    old, new = load_design_text(before), load_design_text(after)
    runner = CliRunner()
    completes = 0

    for argv, expected in sessions():
        assert argv[0] == "charpente"
        command = argv[1:]
        if command[:2] == ["migrate", "complete"]:
            completes += 1
            asyncio.run(old_process(pg_target, old, alive=completes == 1))
        result = runner.invoke(app, command)
        output = result.stdout + result.stderr
        failing = any(line.startswith("error:") for line in expected)
        assert (result.exit_code != 0) == failing, output
        assert matches(expected, output), (expected, output)
        if command[:2] == ["migrate", "apply"]:
            asyncio.run(fill(pg_target, old))
        if command[:2] == ["migrate", "start"]:
            asyncio.run(side_by_side(pg_target, old, new))

    assert completes == 2
    asyncio.run(finished(pg_target))


async def fill(target, design) -> None:
    engine = create_engine(target.url, schema=target.schema)
    try:
        service = Service(design, SqlDatabase(engine, design))
        for n in range(3):
            await service.create("posts", {"headline": f"post {n}", "score": n}, caller=SYSTEM)
    finally:
        await engine.dispose()


async def side_by_side(target, old, new) -> None:
    engines = [create_engine(target.url, schema=target.schema) for _ in range(2)]
    try:
        before = Service(old, SqlDatabase(engines[0], old))
        after = Service(new, SqlDatabase(engines[1], new))
        a = (await before.create("posts", {"headline": "from v1"}, caller=SYSTEM)).item
        b = (await after.create("posts", {"title": "from v2"}, caller=SYSTEM)).item
        assert a is not None
        assert b is not None
        assert (await after.get("posts", a.record["id"], caller=SYSTEM)).record[
            "title"
        ] == "from v1"
        read = await before.get("posts", b.record["id"], caller=SYSTEM)
        assert read.record["headline"] == "from v2"
    finally:
        for engine in engines:
            await engine.dispose()


async def old_process(target, old, *, alive: bool) -> None:
    """A `serve` of the old design as its heartbeat shows it (registered, or gone)."""
    engine = create_engine(target.url, schema=target.schema)
    table = processes_table(sa.MetaData())
    version = design_version(design_to_json(old))
    now = datetime.datetime.now(datetime.UTC)
    try:
        async with engine.begin() as conn:
            await conn.execute(table.delete().where(table.c.design == version))
            if alive:
                await conn.execute(
                    table.insert().values(
                        id=str(uuid.uuid4()),
                        design=version,
                        host="old-host",
                        pid=1,
                        started_at=now,
                        seen_at=now,
                    )
                )
    finally:
        await engine.dispose()


async def finished(target) -> None:
    engine = create_engine(target.url, schema=target.schema)
    try:
        async with engine.connect() as conn:
            titles = (
                await conn.exec_driver_sql("SELECT title FROM posts ORDER BY title")
            ).scalars()
            assert list(titles) == ["from v1", "from v2", "post 0", "post 1", "post 2"]
    finally:
        await engine.dispose()
