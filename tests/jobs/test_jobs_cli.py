"""`charpente jobs list` and `charpente jobs retry`, in process on a temporary SQLite file
whose jobs a service and a runner made."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

import pytest
from job_queues import SHOP
from typer.testing import CliRunner

from charpente.cli.main import app
from charpente.loader import load_design_text
from charpente.runtime.hooks import Hooks
from charpente.runtime.jobs import JobContext, JobRunner
from charpente.runtime.service import Service
from charpente.sql.database import SqlDatabase
from charpente.sql.engine import create_engine
from charpente.sql.jobstore import SqlJobStore


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working directory with the shop design and its own SQLite file."""
    monkeypatch.chdir(tmp_path)
    for name in ("DATABASE_SCHEMA", "SECRET_KEYS", "REDIS_URL"):
        monkeypatch.delenv(f"CHARPENTE_{name}", raising=False)
    (tmp_path / "design.yaml").write_text(SHOP, encoding="utf-8")
    monkeypatch.setenv("CHARPENTE_DESIGN", "design.yaml")
    monkeypatch.setenv("CHARPENTE_DATABASE_URL", f"sqlite+aiosqlite:///{tmp_path / 'app.db'}")
    return tmp_path


@pytest.fixture
def jobs(runner: CliRunner, workdir: Path) -> dict[str, str]:
    """A migrated database with a dead job, a done one and one queued for later."""
    result = runner.invoke(app, ["migrate", "apply", "--yes"])
    assert result.exit_code == 0, result.output
    return asyncio.run(_seed(f"sqlite+aiosqlite:///{workdir / 'app.db'}"))


async def _seed(url: str) -> dict[str, str]:
    hooks = Hooks()

    @hooks.job("fails", retries=0)
    async def fails(ctx: JobContext, args: dict[str, Any]) -> None:
        raise ConnectionError("smtp.example.com refused\ntraceback detail")

    @hooks.job("fine")
    async def fine(ctx: JobContext, args: dict[str, Any]) -> None:
        return None

    design = load_design_text(SHOP)
    database = SqlDatabase(create_engine(url), design)
    try:
        service = Service(design, database, hooks=hooks)
        ids = {
            "dead": await service.enqueue_job("fails", {"to": "ada@example.com"}),
            "done": await service.enqueue_job("fine", {}),
        }
        assert await JobRunner(service, SqlJobStore(database)).run_due() == 2
        ids["queued"] = await service.enqueue_job("fine", {}, 3600)
        return ids
    finally:
        await database.close()


def _lines(output: str) -> list[list[str]]:
    return [re.split(r" {2,}", line) for line in output.splitlines()]


def test_list_shows_jobs_newest_first_with_state_attempts_and_last_error(
    runner: CliRunner, jobs: dict[str, str]
) -> None:
    result = runner.invoke(app, ["jobs", "list"])
    assert result.exit_code == 0, result.output
    rows = _lines(result.stdout)
    assert [tuple(r[:4]) for r in rows] == [
        (jobs["queued"], "queued", "fine", "0/6"),
        (jobs["done"], "done", "fine", "1/6"),
        (jobs["dead"], "dead", "fails", "1/1"),
    ]
    assert rows[2][-1] == "ConnectionError: smtp.example.com refused"
    assert rows[0][-1] == "-"
    assert "ada@example.com" not in result.output  # arguments are not printed


def test_list_filters_by_state_and_limits(runner: CliRunner, jobs: dict[str, str]) -> None:
    dead = runner.invoke(app, ["jobs", "list", "--state", "dead"])
    assert [r[0] for r in _lines(dead.stdout)] == [jobs["dead"]]
    limited = runner.invoke(app, ["jobs", "list", "--limit", "1"])
    assert [r[0] for r in _lines(limited.stdout)] == [jobs["queued"]]
    assert runner.invoke(app, ["jobs", "list", "--state", "running"]).stdout == "no running jobs\n"
    assert runner.invoke(app, ["jobs", "list", "--state", "lost"]).exit_code == 2
    assert runner.invoke(app, ["jobs", "list", "--limit", "0"]).exit_code == 2


def test_retry_queues_a_dead_job_again_with_no_attempt_counted(
    runner: CliRunner, jobs: dict[str, str]
) -> None:
    result = runner.invoke(app, ["jobs", "retry", jobs["dead"]])
    assert result.exit_code == 0, result.output
    assert result.stdout == f"job {jobs['dead']} queued again\n"
    queued = runner.invoke(app, ["jobs", "list", "--state", "queued"]).stdout
    [again] = [r for r in _lines(queued) if r[0] == jobs["dead"]]
    assert again[3] == "0/1"
    assert runner.invoke(app, ["jobs", "list", "--state", "dead"]).stdout == "no dead jobs\n"


def test_retry_dead_queues_every_dead_job(runner: CliRunner, jobs: dict[str, str]) -> None:
    assert runner.invoke(app, ["jobs", "retry", "--dead"]).stdout == "1 dead job queued again\n"
    assert runner.invoke(app, ["jobs", "retry", "--dead"]).stdout == "0 dead jobs queued again\n"


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["{done}"], 1, "error: job {done} is done, not dead: it cannot be retried"),
        (["0190c1d2-0000-7000-8000-000000000000"], 1, "error: no job with id 0190c1d2-"),
        (["not-an-id"], 1, "error: no job with id not-an-id"),
        ([], 2, "error: give one job id, or --dead for every dead job"),
        (["{dead}", "--dead"], 2, "error: give one job id, or --dead"),
    ],
)
def test_retry_says_what_it_cannot_do(
    runner: CliRunner, jobs: dict[str, str], args: list[str], code: int, message: str
) -> None:
    result = runner.invoke(app, ["jobs", "retry", *(a.format(**jobs) for a in args)])
    assert result.exit_code == code
    assert message.format(**jobs) in result.output


def test_jobs_needs_a_migrated_database(runner: CliRunner, workdir: Path) -> None:
    result = runner.invoke(app, ["jobs", "list"])
    assert result.exit_code == 1
    assert "the database is behind the design" in result.output
