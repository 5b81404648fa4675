"""`charpente history archive`: old events move to a file (plain or gzip) and leave the
database; younger ones stay; without an age it refuses."""

from __future__ import annotations

import asyncio
import datetime
import gzip
import json
from pathlib import Path

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from charpente.cli.main import app
from charpente.loader import load_design_text
from charpente.runtime.caller import SYSTEM
from charpente.runtime.service import Service
from charpente.sql.database import SqlDatabase
from charpente.sql.engine import create_engine

DESIGN = """\
charpente: 1
name: notes
resources:
  notes:
    fields:
      body: {type: text}
"""
NOW = datetime.datetime.now(datetime.UTC)


class At:
    def __init__(self, moment: datetime.datetime) -> None:
        self.moment = moment

    def now(self) -> datetime.datetime:
        return self.moment


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("CHARPENTE_DATABASE_SCHEMA", raising=False)
    monkeypatch.delenv("CHARPENTE_HISTORY_RETENTION_DAYS", raising=False)
    (tmp_path / "design.yaml").write_text(DESIGN, encoding="utf-8")
    monkeypatch.setenv("CHARPENTE_DESIGN", "design.yaml")
    url = f"sqlite+aiosqlite:///{tmp_path / 'app.db'}"
    monkeypatch.setenv("CHARPENTE_DATABASE_URL", url)
    result = CliRunner().invoke(app, ["migrate", "apply", "--yes"])
    assert result.exit_code == 0, result.output
    asyncio.run(_write(url))
    return tmp_path


async def _write(url: str) -> None:
    """Two notes written 500 days ago (one changed then too), one today."""
    design = load_design_text(DESIGN)
    database = SqlDatabase(create_engine(url), design)
    try:
        old = Service(design, database, clock=At(NOW - datetime.timedelta(days=500)))
        made = await old.create("notes", {"body": "a"}, caller=SYSTEM)
        assert made.item is not None
        await old.update("notes", str(made.item.record["id"]), {"body": "b"}, caller=SYSTEM)
        await old.create("notes", {"body": "c"}, caller=SYSTEM)
        await Service(design, database).create("notes", {"body": "d"}, caller=SYSTEM)
    finally:
        await database.close()


def events_left(workdir: Path) -> int:
    engine = sa.create_engine(f"sqlite:///{workdir / 'app.db'}")
    with engine.connect() as conn:
        return int(conn.execute(sa.text("SELECT count(*) FROM charpente_events")).scalar_one())


@pytest.mark.parametrize("name", ["old.jsonl", "old.jsonl.gz"])
def test_old_events_move_to_the_file_and_leave_the_database(workdir: Path, name: str) -> None:
    result = CliRunner().invoke(app, ["history", "archive", "--older-than", "400d", "--out", name])
    assert result.exit_code == 0, result.output
    assert "archived 3 event(s)" in result.output
    opener = gzip.open if name.endswith(".gz") else open
    with opener(workdir / name, "rt") as file:
        lines = [json.loads(line) for line in file]
    assert [(e["action"], e["changes"].get("body")) for e in lines] == [
        ("created", "a"),
        ("updated", "b"),
        ("created", "c"),
    ]
    assert events_left(workdir) == 1
    again = CliRunner().invoke(app, ["history", "archive", "--older-than", "400d", "--out", name])
    assert "archived 0 event(s)" in again.output


def test_the_retention_setting_is_the_default_age(
    workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CHARPENTE_HISTORY_RETENTION_DAYS", "600")
    result = CliRunner().invoke(app, ["history", "archive", "--out", "old.jsonl"])
    assert result.exit_code == 0, result.output
    assert "archived 0 event(s)" in result.output
    assert events_left(workdir) == 4


@pytest.mark.parametrize("age", [None, "0d", "400", "a year"])
def test_an_archive_without_a_clear_age_is_refused(workdir: Path, age: str | None) -> None:
    options = [] if age is None else ["--older-than", age]
    result = CliRunner().invoke(app, ["history", "archive", "--out", "x.jsonl", *options])
    assert result.exit_code == 1
    assert "error:" in result.output
    assert events_left(workdir) == 4
