"""`charpente webhooks list|deliveries|replay`, in process on a SQLite file that
`charpente migrate apply` made (so migrations create the webhook tables)."""

from __future__ import annotations

import asyncio
import datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner
from webhook_support import DESIGN_TEXT, message

from charpente.cli.main import app
from charpente.loader import load_design_text
from charpente.runtime.ports import Delivery, Settled
from charpente.runtime.signatures import new_secret
from charpente.sql.database import SqlDatabase
from charpente.sql.engine import create_engine
from charpente.sql.webhookstore import SqlWebhookStore


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A migrated database of the webhooks design, its variables set."""
    monkeypatch.chdir(tmp_path)
    for name in ("DATABASE_SCHEMA", "SECRET_KEYS"):
        monkeypatch.delenv(f"CHARPENTE_{name}", raising=False)
    (tmp_path / "design.yaml").write_text(DESIGN_TEXT, encoding="utf-8")
    monkeypatch.setenv("CHARPENTE_DESIGN", "design.yaml")
    monkeypatch.setenv("CHARPENTE_DATABASE_URL", f"sqlite+aiosqlite:///{tmp_path / 'app.db'}")
    monkeypatch.setenv("HOOK_URL", "https://hooks.example.com/in")
    monkeypatch.setenv("HOOK_SECRET", new_secret())
    result = CliRunner().invoke(app, ["migrate", "apply", "--yes"])
    assert result.exit_code == 0, result.output
    return tmp_path


def owe(workdir: Path, dead: int, pending: int) -> list[str]:
    """Deliveries to `moderation`: `dead` of them dead (after one failed attempt)."""

    async def run() -> list[str]:
        design = load_design_text(DESIGN_TEXT)
        database = SqlDatabase(create_engine(f"sqlite+aiosqlite:///{workdir / 'app.db'}"), design)
        store = SqlWebhookStore(database)
        try:
            now = datetime.datetime.now(datetime.UTC)
            owed = [message() for _ in range(dead + pending)]
            async with database.transaction() as tx:
                await store.add_deliveries(
                    tx, [Delivery(f"{n:08x}-0000-7000-8000-000000000000", "moderation", m.id,
                                  m.key, m.body, now, now) for n, m in enumerate(owed)]
                )  # fmt: skip
            claimed = await store.claim_due(now, now, "cli-test", dead)
            for delivery in claimed:
                failed = Settled("dead", 1, now, 503, "503: down for maintenance")
                assert await store.settle(delivery.id, "cli-test", failed)
            return [d.id for d in claimed]
        finally:
            await database.close()

    return asyncio.run(run())


def test_list_shows_the_design_webhooks(workdir: Path) -> None:
    result = CliRunner().invoke(app, ["webhooks", "list"])

    assert result.exit_code == 0, result.output
    header, row = result.stdout.splitlines()
    assert header.split() == ["name", "source", "enabled", "events", "url"]
    assert row.split() == ["moderation", "design", "yes", "posts.created", "env:HOOK_URL"]


def test_deliveries_lists_the_dead_ones_with_their_last_error(workdir: Path) -> None:
    dead = owe(workdir, dead=2, pending=1)

    every = CliRunner().invoke(app, ["webhooks", "deliveries"])
    only_dead = CliRunner().invoke(app, ["webhooks", "deliveries", "--state", "dead"])
    wrong = CliRunner().invoke(app, ["webhooks", "deliveries", "--state", "lost"])

    assert every.exit_code == 0, every.output
    assert len(every.stdout.splitlines()) == 4
    lines = only_dead.stdout.splitlines()[1:]
    assert sorted(line.split()[1] for line in lines) == sorted(dead)
    assert all("503: down for maintenance" in line for line in lines)
    assert wrong.exit_code == 2
    assert "--state is one of pending, delivered, dead" in wrong.output


def test_replay_moves_dead_deliveries_back_one_or_all(workdir: Path) -> None:
    first, _ = owe(workdir, dead=2, pending=0)

    one = CliRunner().invoke(app, ["webhooks", "replay", "--delivery", first])
    rest = CliRunner().invoke(app, ["webhooks", "replay", "--webhook", "moderation"])
    none = CliRunner().invoke(app, ["webhooks", "replay"])
    pending = CliRunner().invoke(app, ["webhooks", "deliveries", "--state", "pending"])

    assert (one.exit_code, one.stdout.strip()) == (0, "replaying 1 dead delivery")
    assert (rest.exit_code, rest.stdout.strip()) == (0, "replaying 1 dead delivery")
    assert none.exit_code == 1
    assert "no dead delivery matches" in none.output
    assert len(pending.stdout.splitlines()) == 3


def test_the_commands_refuse_a_database_behind_the_design(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "design.yaml").write_text(DESIGN_TEXT, encoding="utf-8")
    monkeypatch.setenv("CHARPENTE_DESIGN", "design.yaml")
    monkeypatch.setenv("CHARPENTE_DATABASE_URL", f"sqlite+aiosqlite:///{tmp_path / 'new.db'}")

    result = CliRunner().invoke(app, ["webhooks", "list"])

    assert result.exit_code == 1
    assert "charpente migrate apply" in result.output
