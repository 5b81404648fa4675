"""`charpente flags list|set|status`: flags changed from the command line, with a history,
and the report of flags to remove."""

from __future__ import annotations

import asyncio
import datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from charpente.cli.main import app
from charpente.sql.engine import create_engine

DESIGN = """\
charpente: 1
name: feed
hooks: hooks.py
auth: {roles: [member, moderator, admin]}
flags:
  reposts: {rollout: 10%, owner: feed team}
  layout: {default: true, variants: {a: 50%, b: 50%}}
  old_banner: {default: true, expires: 2020-01-01, owner: growth}
  forgotten: {}
resources:
  posts:
    fields: {body: text}
    access:
      read: flag("reposts") or flag("layout") == "a" or flag("old_banner")
"""
HOOKS = """\
from charpente.runtime.hooks import Hooks

hooks = Hooks()
"""


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("CHARPENTE_DATABASE_SCHEMA", raising=False)
    monkeypatch.delenv("CHARPENTE_BUS_URL", raising=False)
    (tmp_path / "design.yaml").write_text(DESIGN, encoding="utf-8")
    (tmp_path / "hooks.py").write_text(HOOKS, encoding="utf-8")
    monkeypatch.setenv("CHARPENTE_DESIGN", "design.yaml")
    monkeypatch.setenv("CHARPENTE_DATABASE_URL", f"sqlite+aiosqlite:///{tmp_path / 'app.db'}")
    result = CliRunner().invoke(app, ["migrate", "apply", "--yes"])
    assert result.exit_code == 0, result.output
    return tmp_path


def run(*args: str):
    return CliRunner().invoke(app, ["flags", *args])


def test_list_shows_each_flag_as_it_is_now(workdir):
    result = run("list")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [
        "forgotten  no rollout  default off",
        "layout  no rollout  default on  variants a=50% b=50%",
        "old_banner  no rollout  default on",
        "reposts  rollout 10%  default off",
    ]


def test_set_changes_a_flag_and_keeps_who_did_it(workdir):
    result = run("set", "reposts", "--rollout", "50", "--allow", "moderator", "--by", "ops")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("reposts  rollout 50%  default off  allow moderator  changed ")
    assert result.stdout.rstrip().endswith(" by ops")
    assert "rollout 50%" in run("list").output
    variants = run("set", "layout", "--variant", "a=20", "--variant", "b=80")
    assert "variants a=20% b=80%" in variants.output


def test_set_refuses_a_wrong_change_in_one_line(workdir):
    result = run("set", "layout", "--variant", "a=20", "--variant", "b=20")
    assert result.exit_code == 1
    assert "variants: expected whole percents adding up to 100" in result.output
    assert run("set", "nope", "--rollout", "5").exit_code == 1
    assert run("set", "reposts").exit_code == 2


def test_status_reports_settled_expired_and_unread_flags(workdir):
    later = datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=45)
    assert run("list").exit_code == 0  # the flags are seen (first seen: now)
    asyncio.run(_age(workdir / "app.db", "layout", later))
    asyncio.run(_age(workdir / "app.db", "old_banner", later))
    result = run("status")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [
        "forgotten: no rule or hook reads it: remove it",
        "layout: at 100% for 45 days: remove the flag and keep what it decides",
        "old_banner: at 100% for 45 days: remove the flag and keep what it decides",
        "old_banner: past its expiry date (2020-01-01): ask growth",
    ]


def test_a_flag_read_by_a_hook_is_in_use(workdir):
    (workdir / "hooks.py").write_text(HOOKS + "\nasync def f(ctx):\n    ctx.flag('forgotten')\n")
    assert "forgotten" not in run("status").output


async def _age(path: Path, name: str, at: datetime.datetime) -> None:
    engine = create_engine(f"sqlite+aiosqlite:///{path}")
    async with engine.begin() as conn:
        table = sa.table("charpente_flags", sa.column("name"), sa.column("changed_at"))
        await conn.execute(sa.update(table).where(table.c.name == name).values(changed_at=at))
    await engine.dispose()


def test_check_reports_a_hook_reading_an_undeclared_flag(workdir):
    (workdir / "hooks.py").write_text(HOOKS + "\nasync def f(ctx):\n    ctx.flag('repost')\n")
    result = CliRunner().invoke(app, ["check"])
    assert result.exit_code == 1
    assert "hooks.py:6:5: error: unknown flag 'repost' in a hook" in result.output
