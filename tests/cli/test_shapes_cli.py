"""`charpente shapes`: a server counts its reads, stores them at stop, the command shows
them (text and JSON), most expensive first."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from charpente.cli.main import app
from charpente.settings import settings_from_process
from charpente.wiring import build_application

DESIGN = """\
charpente: 1
name: notes
resources:
  notes:
    access: {read: true, create: true}
    fields:
      body: {type: text}
      topic: {type: string}
"""


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("CHARPENTE_DATABASE_SCHEMA", raising=False)
    monkeypatch.delenv("CHARPENTE_SHAPE_LOG", raising=False)
    (tmp_path / "design.yaml").write_text(DESIGN, encoding="utf-8")
    monkeypatch.setenv("CHARPENTE_DESIGN", "design.yaml")
    monkeypatch.setenv("CHARPENTE_DATABASE_URL", f"sqlite+aiosqlite:///{tmp_path / 'app.db'}")
    result = CliRunner().invoke(app, ["migrate", "apply", "--yes"])
    assert result.exit_code == 0, result.output
    return tmp_path


class _Lifespan:
    """Drives one ASGI lifespan session: startup, then (later) shutdown."""

    def __init__(self, asgi: Any) -> None:
        self.inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.sent: asyncio.Queue[Any] = asyncio.Queue()
        scope = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}
        self.task = asyncio.create_task(asgi(scope, self.inbox.get, self.sent.put))

    async def event(self, name: str) -> None:
        await self.inbox.put({"type": f"lifespan.{name}"})
        answer = await self.sent.get()
        assert answer["type"] == f"lifespan.{name}.complete", answer


async def _serve_some_reads() -> None:
    server = build_application(settings_from_process())
    lifespan = _Lifespan(server)
    await lifespan.event("startup")
    transport = httpx.ASGITransport(app=server)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        created = await client.post("/v1/notes", json={"body": "hi", "topic": "t"})
        assert created.status_code == 201
        for _ in range(3):
            assert (await client.get("/v1/notes", params={"filter": 'topic == "t"'})).is_success
        assert (await client.get(f"/v1/notes/{created.json()['id']}")).is_success
    await lifespan.event("shutdown")
    await lifespan.task


def test_shapes_shows_what_a_server_counted_once_it_stopped(workdir: Path) -> None:
    empty = CliRunner().invoke(app, ["shapes"])
    assert empty.exit_code == 0, empty.output
    assert "no shapes counted yet" in empty.output
    asyncio.run(_serve_some_reads())
    text = CliRunner().invoke(app, ["shapes"])
    assert text.exit_code == 0, text.output
    assert "list notes where topic == ? sort id" in text.output
    shown = CliRunner().invoke(app, ["shapes", "--json", "--order", "calls", "--limit", "1"])
    assert shown.exit_code == 0, shown.output
    [top] = json.loads(shown.output)["data"]
    assert top["shape"] == "list notes where topic == ? sort id"
    assert (top["calls"], top["rows"]) == (3, 3)


def test_a_bad_order_is_a_usage_error(workdir: Path) -> None:
    result = CliRunner().invoke(app, ["shapes", "--order", "fastest"])
    assert result.exit_code == 2
