"""`charpente advise` from the shape log to the migration: a slow list, its index
proposed (text, JSON, the exit code for CI), written into the design with --apply, built
by `migrate apply`, then no advice left. Also the design-file patching on its own."""

from __future__ import annotations

import asyncio
import datetime
import json
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from charpente.cli.commands.design_patch import add_indexes
from charpente.cli.main import app
from charpente.errors import ConfigError
from charpente.loader import load_design_text
from charpente.settings import settings_from_process
from charpente.sql.engine import create_engine
from charpente.sql.schema import build_metadata
from charpente.wiring import build_application

DESIGN = """\
charpente: 1
name: blog
resources:
  posts:
    access: {read: true, create: true}
    fields:
      author: {type: string, required: true}  # who wrote it
      body: {type: text}
  tags:
    access: {read: true}
    fields:
      name: {type: string}
"""


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("CHARPENTE_DATABASE_SCHEMA", raising=False)
    monkeypatch.delenv("CHARPENTE_SHAPE_LOG", raising=False)
    (tmp_path / "design.yaml").write_text(DESIGN, encoding="utf-8")
    monkeypatch.setenv("CHARPENTE_DESIGN", "design.yaml")
    url = f"sqlite+aiosqlite:///{tmp_path / 'app.db'}"
    monkeypatch.setenv("CHARPENTE_DATABASE_URL", url)
    result = CliRunner().invoke(app, ["migrate", "apply", "--yes"])
    assert result.exit_code == 0, result.output
    asyncio.run(_seed_and_read(url))
    return tmp_path


async def _seed_and_read(url: str) -> None:
    """3,000 posts by 300 authors, then a server lists one author's newest posts."""
    design = load_design_text(DESIGN)
    engine = create_engine(url)
    posts = build_metadata(design).tables["posts"]
    base = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
    rows = []
    for i in range(3000):
        at = base + datetime.timedelta(seconds=i)
        rows.append({"id": str(uuid.uuid4()), "version": 1, "created_at": at, "updated_at": at,
                     "author": f"a{i % 300}", "body": "b"})  # fmt: skip
    async with engine.begin() as conn:
        await conn.execute(sa.insert(posts), rows)
    await engine.dispose()
    server = build_application(settings_from_process())
    inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    sent: asyncio.Queue[Any] = asyncio.Queue()
    scope = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}
    task = asyncio.create_task(server(scope, inbox.get, sent.put))
    await inbox.put({"type": "lifespan.startup"})
    assert (await sent.get())["type"] == "lifespan.startup.complete"
    transport = httpx.ASGITransport(app=server)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        for n in range(5):
            params = {"filter": f'author == "a{n}"', "sort": "-created_at"}
            assert (await client.get("/v1/posts", params=params)).status_code == 200
    await inbox.put({"type": "lifespan.shutdown"})
    assert (await sent.get())["type"] == "lifespan.shutdown.complete"
    await task


def test_advise_proposes_the_index_and_apply_writes_it_into_the_design(workdir: Path) -> None:
    runner = CliRunner()
    text = runner.invoke(app, ["advise"])
    assert text.exit_code == 0, text.output
    assert "list posts where author == ? sort -created_at,-id" in text.output
    assert "+ index posts (author, created_at DESC, id DESC)" in text.output
    assert "indexes: [[author, -created_at]]" in text.output

    as_json = runner.invoke(app, ["advise", "--json"])
    assert json.loads(as_json.output)["indexes"] == {"posts": [["author", "-created_at"]]}
    assert runner.invoke(app, ["advise", "--fail-over", "0"]).exit_code == 3
    assert runner.invoke(app, ["advise", "--fail-over", "100000"]).exit_code == 0
    verified = runner.invoke(app, ["advise", "--verify"])
    assert verified.exit_code == 0, verified.output
    assert "verified: p50 " in verified.output
    assert (workdir / "design.yaml").read_text(encoding="utf-8") == DESIGN  # nothing changed

    applied = runner.invoke(app, ["advise", "--apply"])
    assert applied.exit_code == 0, applied.output
    written = (workdir / "design.yaml").read_text(encoding="utf-8")
    assert "      body: {type: text}\n    indexes: [[author, -created_at]]\n  tags:" in written
    assert "# who wrote it" in written  # the rest of the file is left as it was
    assert "ix_posts_author_created_at_desc" in applied.output  # the migration plan

    migrated = runner.invoke(app, ["migrate", "apply", "--yes"])
    assert migrated.exit_code == 0, migrated.output
    again = runner.invoke(app, ["advise"])
    assert again.exit_code == 0, again.output
    assert "+ index" not in again.output
    assert "ok: no index to add" in again.output


def test_a_flow_list_of_indexes_is_extended_in_place() -> None:
    text = DESIGN.replace(
        "      body: {type: text}\n", "      body: {type: text}\n    indexes: [[body]]\n"
    )
    patched = add_indexes(text, {"posts": [["author", "-created_at"]]})
    assert "    indexes: [[body], [author, -created_at]]\n" in patched
    load_design_text(patched)


def test_a_block_list_of_indexes_gets_new_items() -> None:
    block = "    indexes:\n      - [body]\n"
    text = DESIGN.replace("      body: {type: text}\n", "      body: {type: text}\n" + block)
    patched = add_indexes(text, {"posts": [["author"]], "tags": [["name"]]})
    assert "    indexes:\n      - [body]\n      - [author]\n  tags:" in patched
    assert patched.endswith("      name: {type: string}\n    indexes: [[name]]\n")
    loaded = load_design_text(patched)
    assert len(loaded.resources["posts"].indexes) == 2


def test_patching_an_unknown_resource_is_a_clear_error() -> None:
    with pytest.raises(ConfigError, match="no resource 'nope'"):
        add_indexes(DESIGN, {"nope": [["a"]]})
