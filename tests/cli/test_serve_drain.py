"""`serve --drain-seconds`: what the server processes read (CHARPENTE_DRAIN_SECONDS), 5 s by
default and 0 with --reload unless given."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from charpente.cli.commands import serve as serve_module
from charpente.cli.main import app
from charpente.runtime import metrics
from charpente.settings import Settings, settings_from_process, to_environ


@pytest.fixture
def serving(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[dict[str, object]]:
    """`charpente serve` up to the hand-over to uvicorn (not called): its options."""
    monkeypatch.chdir(tmp_path)
    exported = {*to_environ(Settings()), "CHARPENTE_DATABASE_SCHEMA"}
    for name in {*exported, *(n for n in os.environ if n.startswith("CHARPENTE_"))}:
        monkeypatch.setenv(name, "")  # recorded, so what `serve` exports is undone after
        monkeypatch.delenv(name)
    monkeypatch.setenv("CHARPENTE_DATABASE_URL", f"sqlite+aiosqlite:///{tmp_path}/x.db")
    monkeypatch.setenv("CHARPENTE_DESIGN", "template:social")
    calls: list[dict[str, object]] = []
    monkeypatch.setattr(serve_module.uvicorn, "run", lambda *a, **k: calls.append(k))
    # --reload shares the metrics of the server's processes: undone, as the variables are
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", "")
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR")
    monkeypatch.setitem(metrics._shared, "directory", "")
    return calls


@pytest.mark.parametrize(
    ("options", "drain"),
    [
        ([], 5.0),
        (["--drain-seconds", "1.5"], 1.5),
        (["--reload"], 0.0),
        (["--reload", "--drain-seconds", "2"], 2.0),
    ],
)
def test_the_drain_reaches_the_server_processes(
    serving: list[dict[str, object]], options: list[str], drain: float
) -> None:
    result = CliRunner().invoke(app, ["serve", "--migrate", *options])
    assert result.exit_code == 0, result.output
    assert len(serving) == 1
    assert settings_from_process().drain_seconds == drain


def test_a_drain_out_of_bounds_is_refused(serving: list[dict[str, object]]) -> None:
    result = CliRunner().invoke(app, ["serve", "--drain-seconds", "301"])
    assert result.exit_code == 2
    assert serving == []
