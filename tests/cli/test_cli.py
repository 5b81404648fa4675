"""The `charpente` command, in process, on temporary directories and SQLite files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from charpente.cli.commands import serve as serve_module
from charpente.cli.main import app
from charpente.settings import settings_from_process

BLOG = """\
charpente: 1
name: blog
api_version: 1
resources:
  authors:
    access: {read: true, create: true, update: true, delete: true}
    fields:
      handle: {type: string, required: true, unique: true}
  posts:
    access: {read: true, create: true, update: true, delete: true}
    fields:
      author: {ref: authors, required: true}
      body: {type: text, required: true, max_length: 2000}
"""

BROKEN = """\
charpente: 1
name: blog
api_version: 1
resources:
  posts:
    fields:
      body: {type: strng}
"""


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A clean working directory with its own SQLite file and no CHARPENTE_* variables."""
    monkeypatch.chdir(tmp_path)
    for name in ("DESIGN", "DATABASE_SCHEMA", "POOL_SIZE", "MAX_BODY_BYTES", "LOG_LEVEL"):
        monkeypatch.setenv(f"CHARPENTE_{name}", "")  # recorded, so `serve` cannot leak it
        monkeypatch.delenv(f"CHARPENTE_{name}")
    monkeypatch.setenv("CHARPENTE_DATABASE_URL", f"sqlite+aiosqlite:///{tmp_path / 'app.db'}")
    return tmp_path


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_init_writes_the_social_template_and_check_accepts_it(
    runner: CliRunner, workdir: Path
) -> None:
    result = runner.invoke(app, ["init"])
    assert result.exit_code == 0, result.output
    assert (workdir / "design.yaml").is_file()
    checked = runner.invoke(app, ["check"])
    assert checked.exit_code == 0, checked.output
    assert checked.stdout.startswith("design.yaml: ok (")
    assert "resources)" in checked.stdout


def test_init_writes_into_a_new_directory(runner: CliRunner, workdir: Path) -> None:
    result = runner.invoke(app, ["init", "social", "app"])
    assert result.exit_code == 0, result.output
    assert (workdir / "app" / "design.yaml").is_file()


def test_init_never_overwrites_a_design(runner: CliRunner, workdir: Path) -> None:
    write(workdir / "design.yaml", "mine")
    result = runner.invoke(app, ["init"])
    assert result.exit_code == 1
    assert "already exists" in result.stderr
    assert (workdir / "design.yaml").read_text() == "mine"


def test_init_lists_the_templates_on_an_unknown_name(runner: CliRunner, workdir: Path) -> None:
    result = runner.invoke(app, ["init", "nope"])
    assert result.exit_code == 2
    assert "social" in result.stderr
    assert not (workdir / "design.yaml").exists()


def test_check_prints_every_problem_with_its_line_and_column(
    runner: CliRunner, workdir: Path
) -> None:
    write(workdir / "design.yaml", BROKEN)
    result = runner.invoke(app, ["check", "design.yaml"])
    assert result.exit_code == 1
    assert "design.yaml:7:" in result.stderr
    assert ": error: " in result.stderr
    assert "Traceback" not in result.output


def test_check_without_a_design_says_how_to_get_one(runner: CliRunner, workdir: Path) -> None:
    result = runner.invoke(app, ["check"])
    assert result.exit_code == 1
    assert "charpente init" in result.stderr


def test_a_bad_setting_is_one_line_naming_the_variable(
    runner: CliRunner, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(workdir / "design.yaml", BLOG)
    monkeypatch.setenv("CHARPENTE_POOL_SIZE", "lots")
    result = runner.invoke(app, ["migrate", "plan"])
    assert result.exit_code == 1
    assert result.stderr.count("\n") == 1
    assert "CHARPENTE_POOL_SIZE" in result.stderr


def test_openapi_prints_a_valid_document(runner: CliRunner, workdir: Path) -> None:
    write(workdir / "blog.yaml", BLOG)
    result = runner.invoke(app, ["openapi", "--design", "blog.yaml", "--indent", "0"])
    assert result.exit_code == 0, result.output
    assert result.stdout.count("\n") == 1
    document = json.loads(result.stdout)
    pytest.importorskip("openapi_spec_validator").validate(document)
    assert document["info"]["title"] == "blog"


def test_migrate_plan_then_apply_brings_the_database_up_to_date(
    runner: CliRunner, workdir: Path
) -> None:
    write(workdir / "design.yaml", BLOG)
    planned = runner.invoke(app, ["migrate", "plan"])
    assert planned.exit_code == 0, planned.output
    assert "create table posts" in planned.stdout
    assert "safe" in planned.stdout
    applied = runner.invoke(app, ["migrate", "apply", "--yes"])
    assert applied.exit_code == 0, applied.output
    assert "the database is up to date" in applied.stdout
    again = runner.invoke(app, ["migrate", "plan"])
    assert again.exit_code == 0
    assert "the database is up to date" in again.stdout
    assert "create table" not in again.stdout


def test_migrate_apply_asks_first_and_changes_nothing_on_no(
    runner: CliRunner, workdir: Path
) -> None:
    write(workdir / "design.yaml", BLOG)
    declined = runner.invoke(app, ["migrate", "apply"], input="n\n")
    assert declined.exit_code == 1
    planned = runner.invoke(app, ["migrate", "plan"])
    assert "create table posts" in planned.stdout


def test_serve_never_starts_on_a_design_with_errors(
    runner: CliRunner, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    started: list[object] = []
    monkeypatch.setattr(serve_module.uvicorn, "run", lambda *a, **k: started.append(a))
    write(workdir / "design.yaml", BROKEN)
    result = runner.invoke(app, ["serve", "--migrate"])
    assert result.exit_code == 1
    assert "design.yaml:7:" in result.stderr
    assert "Traceback" not in result.output
    assert started == []


def test_serve_refuses_a_database_behind_the_design(
    runner: CliRunner, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    started: list[object] = []
    monkeypatch.setattr(serve_module.uvicorn, "run", lambda *a, **k: started.append(a))
    write(workdir / "design.yaml", BLOG)
    result = runner.invoke(app, ["serve"])
    assert result.exit_code == 1
    assert "charpente migrate apply" in result.stderr
    assert started == []


def test_serve_migrates_announces_and_hands_over_to_uvicorn(
    runner: CliRunner, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[tuple[tuple[object, ...], dict[str, object]]] = []
    monkeypatch.setattr(serve_module.uvicorn, "run", lambda *a, **k: calls.append((a, k)))
    monkeypatch.setattr(serve_module, "_check_port", lambda host, port: None)  # nothing listens
    monkeypatch.setenv("CHARPENTE_DATABASE_URL", f"sqlite+aiosqlite:///{workdir}/x.db")
    monkeypatch.setenv("CHARPENTE_DESIGN", "template:social")  # replaced by --design below
    write(workdir / "blog.yaml", BLOG)
    result = runner.invoke(app, ["serve", "-d", "blog.yaml", "--port", "8123", "--migrate"])
    assert result.exit_code == 0, result.output
    assert "http://127.0.0.1:8123" in result.stdout
    assert "/docs" in result.stdout
    [(args, kwargs)] = calls
    assert args == ("charpente.wiring:app_from_env",)
    assert kwargs["factory"] is True
    assert (kwargs["loop"], kwargs["http"], kwargs["access_log"]) == ("uvloop", "httptools", False)
    assert settings_from_process().design_path == Path("blog.yaml")  # what workers will read


def test_version_prints_the_installed_version(runner: CliRunner) -> None:
    from importlib.metadata import version

    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.stdout.strip() == f"charpente {version('charpente')}"
