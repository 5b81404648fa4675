"""`migrate plan` notes the steps that would lock a table with rows; `start`/`complete` need
PostgreSQL."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from typer.testing import CliRunner

from charpente.cli.main import app

BEFORE = """\
charpente: 1
name: blog
resources:
  posts:
    fields:
      headline: {type: string, required: true, max_length: 200}
"""
INDEXED = BEFORE + "    indexes: [[headline]]\n"


def use(monkeypatch: pytest.MonkeyPatch, url: str, schema: str | None) -> None:
    monkeypatch.setenv("CHARPENTE_DATABASE_URL", url)
    if schema is not None:
        monkeypatch.setenv("CHARPENTE_DATABASE_SCHEMA", schema)


async def one_post(url: str, schema: str | None) -> None:
    from charpente.sql.engine import create_engine

    engine = create_engine(url, schema=schema)
    try:
        async with engine.begin() as conn:
            await conn.exec_driver_sql(
                "INSERT INTO posts (id, headline, created_at, updated_at, version) "
                "VALUES ('0190a000-0000-7000-8000-000000000001', 'a', now(), now(), 1)"
            )
    finally:
        await engine.dispose()


def test_plan_notes_an_index_built_concurrently_on_a_table_with_rows(
    pg_target, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    use(monkeypatch, pg_target.url, pg_target.schema)
    (tmp_path / "v1.yaml").write_text(BEFORE)
    (tmp_path / "v2.yaml").write_text(INDEXED)
    runner = CliRunner()
    applied = runner.invoke(app, ["migrate", "apply", "--yes", "-d", str(tmp_path / "v1.yaml")])
    assert applied.exit_code == 0, applied.output
    asyncio.run(one_post(pg_target.url, pg_target.schema))

    planned = runner.invoke(app, ["migrate", "plan", "-d", str(tmp_path / "v2.yaml")])

    assert planned.exit_code == 0, planned.output
    assert "on tables with rows (PostgreSQL):" in planned.stdout
    note = "1. CREATE INDEX would block writes to posts while it reads every row; built "
    assert f"  {note}CONCURRENTLY after the commit" in planned.stdout


def test_start_and_complete_say_they_need_postgresql_on_sqlite(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    use(monkeypatch, f"sqlite+aiosqlite:///{tmp_path / 'blog.db'}", None)
    design = tmp_path / "blog.yaml"
    design.write_text(BEFORE)
    runner = CliRunner()

    for command in ("start", "complete"):
        result = runner.invoke(app, ["migrate", command, "-d", str(design)])
        assert result.exit_code == 1
        assert "zero-downtime migrations need PostgreSQL" in result.stderr
