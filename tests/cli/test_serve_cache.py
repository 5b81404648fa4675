"""`charpente serve` refuses an in-process response cache with several processes."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from charpente.cli.main import app

DESIGN = """\
charpente: 1
name: notes
cache: {ttl: 60s}
resources:
  notes:
    access: {read: true}
    fields:
      body: {type: text}
"""


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    for name in ("CHARPENTE_DATABASE_SCHEMA", "CHARPENTE_REDIS_URL", "CHARPENTE_WORKER"):
        monkeypatch.delenv(name, raising=False)
    (tmp_path / "design.yaml").write_text(DESIGN, encoding="utf-8")
    monkeypatch.setenv("CHARPENTE_DESIGN", "design.yaml")
    monkeypatch.setenv("CHARPENTE_DATABASE_URL", f"sqlite+aiosqlite:///{tmp_path / 'app.db'}")
    return tmp_path


def test_several_workers_without_redis_are_refused(workdir: Path) -> None:
    result = CliRunner().invoke(app, ["serve", "--workers", "2"])
    assert result.exit_code == 1
    assert "set CHARPENTE_REDIS_URL to share the cache" in result.output


def test_a_separate_worker_without_redis_is_refused(
    workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CHARPENTE_WORKER", "separate")
    result = CliRunner().invoke(app, ["serve"])
    assert result.exit_code == 1
    assert "CHARPENTE_WORKER=separate" in result.output
