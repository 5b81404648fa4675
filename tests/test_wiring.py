"""The composition root: hooks loading, the ASGI factory, and the startup guard."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from charpente.errors import ConfigError
from charpente.loader import load_design_text
from charpente.settings import Settings
from charpente.wiring import (
    BEHIND_MESSAGE,
    app_from_env,
    apply_database_migration,
    build_application,
    load_design_hooks,
)

BLOG = """\
charpente: 1
name: blog
api_version: 1
{hooks}
resources:
  posts:
    access: {{read: true, create: true, update: true, delete: true}}
    fields:
      body: {{type: text, required: true}}
"""

GOOD_HOOKS = """\
from starlette.responses import PlainTextResponse

from charpente import Hooks

hooks = Hooks()


@hooks.route("/hello")
async def hello(request):
    return PlainTextResponse("hello")
"""


@pytest.fixture(autouse=True)
def charpente_logger() -> Iterator[None]:
    """configure_logging changes the `charpente` logger: put it back after each test."""
    logger = logging.getLogger("charpente")
    level, handlers = logger.level, list(logger.handlers)
    yield
    logger.setLevel(level)
    logger.handlers[:] = handlers


def write_design(tmp_path: Path, hooks: str | None = None) -> Path:
    line = f"hooks: {hooks}" if hooks else ""
    path = tmp_path / "design.yaml"
    path.write_text(BLOG.format(hooks=line), encoding="utf-8")
    return path


def hooks_error(tmp_path: Path, spec: str) -> str:
    design = load_design_text(BLOG.format(hooks=f"hooks: {spec}"), str(tmp_path / "design.yaml"))
    with pytest.raises(ConfigError) as caught:
        load_design_hooks(design, tmp_path)
    message = str(caught.value)
    assert "\n" not in message
    assert "Traceback" not in message
    return message


def test_a_missing_hooks_file_is_one_clear_sentence(tmp_path: Path) -> None:
    message = hooks_error(tmp_path, "hooks.py")
    assert "'hooks.py'" in message
    assert "does not exist" in message


def test_a_hooks_file_with_a_syntax_error_names_the_line(tmp_path: Path) -> None:
    (tmp_path / "hooks.py").write_text("x = 1\ndef broken(:\n")
    assert "syntax error at line 2" in hooks_error(tmp_path, "hooks.py")


def test_a_hooks_module_without_hooks_says_what_to_define(tmp_path: Path) -> None:
    (tmp_path / "hooks.py").write_text("x = 1\n")
    assert "hooks = Hooks()" in hooks_error(tmp_path, "hooks.py")


def test_a_hooks_module_that_fails_while_loading_says_how(tmp_path: Path) -> None:
    (tmp_path / "hooks.py").write_text("raise RuntimeError('no config')\n")
    assert "RuntimeError: no config" in hooks_error(tmp_path, "hooks.py")


def test_an_unimportable_dotted_hooks_module_is_a_config_error(tmp_path: Path) -> None:
    assert "cannot be loaded" in hooks_error(tmp_path, "no_such_package.hooks")


def test_a_design_without_hooks_loads_none(tmp_path: Path) -> None:
    design = load_design_text(BLOG.format(hooks=""), "design.yaml")
    assert load_design_hooks(design, tmp_path) is None


@pytest.fixture
def migrated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """A SQLite file brought up to a design with a hooks file, named by the environment."""
    (tmp_path / "hooks.py").write_text(GOOD_HOOKS)
    design_path = write_design(tmp_path, "hooks.py")
    url = f"sqlite+aiosqlite:///{tmp_path / 'app.db'}"
    monkeypatch.setenv("CHARPENTE_DATABASE_URL", url)
    monkeypatch.setenv("CHARPENTE_DESIGN", str(design_path))
    return Settings(database_url=url, design_path=design_path)


@pytest.mark.anyio
async def test_app_from_env_serves_a_migrated_database(migrated: Settings) -> None:
    from charpente.wiring import load_configured_design

    await apply_database_migration(migrated, load_configured_design(migrated))
    app = app_from_env()
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        assert (await client.get("/healthz")).status_code == 200
        created = await client.post("/v1/posts", json={"body": "hello"})
        assert created.status_code == 201, created.text
        assert (await client.get("/hello")).text == "hello"  # the design's hooks are mounted
        assert (await client.get("/openapi.json")).json()["info"]["title"] == "blog"


async def run_lifespan(app: Any, *events: str) -> list[dict[str, Any]]:
    """Drive the ASGI lifespan protocol by hand; what the app sent back."""
    inbox = [{"type": f"lifespan.{e}"} for e in events]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return inbox.pop(0)

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app({"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}, receive, send)
    return sent


@pytest.mark.anyio
async def test_startup_fails_with_one_line_when_the_database_is_behind(
    migrated: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    app = build_application(migrated)  # nothing migrated yet
    with caplog.at_level(logging.ERROR, logger="charpente"):
        sent = await run_lifespan(app, "startup")
    assert sent == [{"type": "lifespan.startup.failed", "message": ""}]
    assert [r.getMessage() for r in caplog.records] == [BEHIND_MESSAGE]


@pytest.mark.anyio
async def test_startup_and_shutdown_complete_on_a_current_database(migrated: Settings) -> None:
    from charpente.wiring import load_configured_design

    await apply_database_migration(migrated, load_configured_design(migrated))
    sent = await run_lifespan(build_application(migrated), "startup", "shutdown")
    assert [m["type"] for m in sent] == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
