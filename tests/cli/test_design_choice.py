"""Which design a command works on: named on its first line, never a silent template."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from charpente.cli.main import app

BLOG = """\
charpente: 1
name: blog
api_version: 1
resources:
  posts:
    access: {read: true, create: true, update: true, delete: true}
    fields:
      body: {type: text, required: true, max_length: 2000}
"""


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty folder, no CHARPENTE_DESIGN, its own SQLite file."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("CHARPENTE_DESIGN", raising=False)
    monkeypatch.setenv("CHARPENTE_DATABASE_URL", f"sqlite+aiosqlite:///{tmp_path / 'app.db'}")
    return tmp_path


COMMANDS = [
    ["serve"],
    ["worker"],
    ["migrate", "plan"],
    ["migrate", "apply", "--yes"],
    ["openapi"],
    ["check"],
    ["accounts", "create", "ada@example.com", "--generate"],
    ["accounts", "invite"],
    ["keys", "list"],
    ["jobs", "list"],
    ["webhooks", "list"],
]


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_without_a_design_every_command_stops_with_the_hint_to_init(
    workdir: Path, command: list[str]
) -> None:
    result = CliRunner().invoke(app, command)
    assert result.exit_code == 1, result.output
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        "error: no design.yaml here and CHARPENTE_DESIGN is not set: write one with "
        "`charpente init` (or pass --design PATH)"
    ]
    assert not (workdir / "app.db").exists()


@pytest.mark.parametrize(
    "command", [["openapi"], ["migrate", "plan"], ["keys", "list"]], ids=" ".join
)
def test_the_first_line_names_the_design(workdir: Path, command: list[str]) -> None:
    (workdir / "blog.yaml").write_text(BLOG, encoding="utf-8")
    result = CliRunner().invoke(app, [*command, "-d", "blog.yaml"])
    assert result.stderr.splitlines()[0] == "design: blog.yaml (blog)"
    template = CliRunner().invoke(app, command, env={"CHARPENTE_DESIGN": "template:social"})
    assert template.stderr.splitlines()[0] == "design: template:social (social)"


def test_migrate_plan_creates_no_database_file(workdir: Path) -> None:
    (workdir / "design.yaml").write_text(BLOG, encoding="utf-8")
    result = CliRunner().invoke(app, ["migrate", "plan"])
    assert result.exit_code == 0, result.output
    assert "create table posts" in result.stdout.lower()
    assert not (workdir / "app.db").exists()
    assert sorted(p.name for p in workdir.iterdir()) == ["design.yaml"]


@pytest.mark.parametrize(
    "command",
    [["check"], ["openapi"], ["migrate", "plan"], ["migrate", "apply", "--yes"]],
    ids=" ".join,
)
def test_the_design_may_be_given_positionally_or_with_d(workdir: Path, command: list[str]) -> None:
    (workdir / "blog.yaml").write_text(BLOG, encoding="utf-8")
    for given in (["blog.yaml"], ["-d", "blog.yaml"], ["--design", "blog.yaml"]):
        result = CliRunner().invoke(app, [*command, *given])
        assert result.exit_code == 0, (given, result.output)
    both = CliRunner().invoke(app, [*command, "blog.yaml", "-d", "other.yaml"])
    assert both.exit_code == 2
    assert "two designs given" in both.stderr


def test_check_accepts_d_and_says_ok(workdir: Path) -> None:
    (workdir / "blog.yaml").write_text(BLOG, encoding="utf-8")
    result = CliRunner().invoke(app, ["check", "-d", "blog.yaml"])
    assert result.exit_code == 0, result.output
    assert result.stdout == "blog.yaml: ok (2 resources)\n"  # posts and the built-in accounts


@pytest.mark.parametrize("command", [["serve", "--port", "1"], ["worker"]], ids=" ".join)
def test_a_separate_worker_without_a_broker_is_refused_at_start(
    workdir: Path, command: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    (workdir / "design.yaml").write_text(BLOG, encoding="utf-8")
    monkeypatch.setenv("CHARPENTE_WORKER", "separate")
    monkeypatch.delenv("CHARPENTE_BUS_URL", raising=False)
    result = CliRunner().invoke(app, command)
    assert result.exit_code == 1, result.output
    assert result.stderr.splitlines()[1:] == [
        "error: CHARPENTE_WORKER=separate needs a broker: set CHARPENTE_BUS_URL (amqp://, "
        "nats:// or redis://); with the in-process bus the worker's events would never reach "
        "any server"
    ]
    assert not (workdir / "app.db").exists()


def test_the_app_factory_refuses_a_separate_worker_without_a_broker() -> None:
    from charpente.errors import ConfigError
    from charpente.settings import Settings
    from charpente.wiring import build_application

    with pytest.raises(ConfigError, match="needs a broker"):
        build_application(Settings(worker="separate", design_template="social"))


def test_a_port_in_use_stops_serve_with_exit_3_before_it_says_it_serves(
    workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import socket

    from charpente.cli.commands import serve as serve_module

    started: list[object] = []
    monkeypatch.setattr(serve_module.uvicorn, "run", lambda *a, **k: started.append(a))
    (workdir / "design.yaml").write_text(BLOG, encoding="utf-8")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = CliRunner().invoke(app, ["serve", "--migrate", "--port", str(port)])
    assert result.exit_code == 3, result.output
    assert "serving" not in result.output
    assert result.stderr.splitlines()[1:] == [
        f"error: cannot listen on 127.0.0.1:{port}: Address already in use "
        "(another server uses it: stop it or pick another --port)"
    ]
    assert started == []
