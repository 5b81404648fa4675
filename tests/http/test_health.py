"""/healthz and /readyz on the whole wired app: liveness asks nothing, readiness checks the
database and the design applied to it, details for admins only, 503 + Retry-After when not
ready; a column dropped under a running server gives 503 problems, never 500s."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from charpente.loader import load_design_text
from charpente.settings import Settings
from charpente.sql.engine import create_engine
from charpente.wiring import apply_database_migration, build_application

PASSWORD = "correct horse battery staple"

DESIGN = """
charpente: 1
name: health
api_version: 1
auth:
  roles: [member, admin]
resources:
  notes:
    access: {read: true, create: true, update: true, delete: true}
    fields:
      text: {type: string, required: true, max_length: 50}
      mood: {type: string, max_length: 10}
"""


@contextlib.asynccontextmanager
async def running(app: Any) -> AsyncIterator[None]:
    """The app between its lifespan's startup and shutdown."""
    inbox: asyncio.Queue[dict[str, str]] = asyncio.Queue()
    sent: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    inbox.put_nowait({"type": "lifespan.startup"})
    scope = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}
    task = asyncio.create_task(app(scope, inbox.get, sent.put))
    started = await sent.get()
    assert started["type"] == "lifespan.startup.complete", started
    try:
        yield
    finally:
        inbox.put_nowait({"type": "lifespan.shutdown"})
        await task


@pytest.fixture
async def wired(db_target: Any, tmp_path: Any, anyio_backend: str) -> AsyncIterator[Any]:
    design_file = tmp_path / "design.yaml"
    design_file.write_text(DESIGN)
    settings = Settings(
        database_url=db_target.url, database_schema=db_target.schema, design_path=design_file
    )
    design = load_design_text(DESIGN, str(design_file))
    await apply_database_migration(settings, design)
    app = build_application(settings, design)
    async with running(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            client.app = app  # type: ignore[attr-defined]
            client.target = db_target  # type: ignore[attr-defined]
            yield client


async def admin_headers(client: Any) -> dict[str, str]:
    accounts = client.app.state.accounts
    await accounts.create_account("root@example.com", "admin", PASSWORD, {})
    pair = await accounts.token(
        {"grant_type": "password", "username": "root@example.com", "password": PASSWORD}
    )
    return {"Authorization": f"Bearer {pair.access_token}"}


async def drop_column(target: Any, table: str, column: str) -> None:
    engine = create_engine(target.url, schema=target.schema)
    try:
        async with engine.begin() as conn:
            await conn.execute(sa.text(f"ALTER TABLE {table} DROP COLUMN {column}"))
    finally:
        await engine.dispose()


async def add_column(target: Any, table: str, column: str) -> None:
    engine = create_engine(target.url, schema=target.schema)
    try:
        async with engine.begin() as conn:
            await conn.execute(sa.text(f"ALTER TABLE {table} ADD COLUMN {column} VARCHAR(10)"))
    finally:
        await engine.dispose()


@pytest.mark.anyio
async def test_readyz_is_ok_without_details_for_anyone(wired: Any) -> None:
    response = await wired.get("/readyz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
    assert response.headers["cache-control"] == "no-store"


@pytest.mark.anyio
async def test_readyz_shows_every_component_to_an_admin(wired: Any) -> None:
    response = await wired.get("/readyz", headers=await admin_headers(wired))
    assert response.status_code == 200
    checks = response.json()["checks"]
    assert set(checks) == {"database", "design", "pool", "outbox", "bus"}
    assert checks["database"]["status"] == "ok"
    assert checks["database"]["ping_ms"] >= 0
    assert checks["design"] == {"status": "ok", "applied": True}
    assert checks["pool"]["size"] >= 1
    assert checks["outbox"]["status"] == "ok"
    assert checks["outbox"]["pending"] >= 0
    assert checks["bus"]["breaker"] == "closed"
    assert checks["bus"]["name"] == "memory"


@pytest.mark.anyio
async def test_healthz_asks_nothing_of_the_database(wired: Any) -> None:
    database = wired.app.state.service.database

    async def broken() -> None:
        raise AssertionError("healthz must not touch the database")

    database.ping = broken
    assert (await wired.get("/healthz")).json() == {"status": "ok"}
    response = await wired.get("/readyz")
    assert response.status_code == 503
    assert response.headers["retry-after"] == "5"
    assert response.json()["type"] == "/problems/unavailable"
    assert response.json()["detail"] == "the database is not reachable"


@pytest.mark.anyio
async def test_readyz_is_503_while_draining(wired: Any) -> None:
    wired.app.state.health.start_draining()
    response = await wired.get("/readyz")
    assert response.status_code == 503
    assert response.headers["retry-after"]
    assert response.json()["detail"] == "the server is stopping"


@pytest.mark.anyio
async def test_a_dropped_column_answers_503_problems_never_500(
    wired: Any, caplog: pytest.LogCaptureFixture
) -> None:
    created = await wired.post("/v1/notes", json={"text": "hello", "mood": "calm"})
    assert created.status_code == 201, created.text
    await drop_column(wired.target, "notes", "mood")
    with caplog.at_level(logging.ERROR, logger="charpente"):
        answers = [
            await wired.get("/v1/notes"),
            await wired.get(f"/v1/notes/{created.json()['id']}"),
            await wired.post("/v1/notes", json={"text": "again"}),
            await wired.post("/v1/notes", json={"text": "again"}),
        ]
    for answer in answers:
        assert answer.status_code == 503, answer.text
        assert answer.headers["retry-after"]
        assert answer.json()["type"] == "/problems/design-mismatch"
        assert "no longer matches the design" in answer.json()["detail"]
    said = [r.getMessage() for r in caplog.records if "matches the design" in r.getMessage()]
    assert len(said) == 1, said  # once, not per request
    assert "charpente migrate apply" in said[0]
    ready = await wired.get("/readyz", headers=await admin_headers(wired))
    assert ready.status_code == 503
    assert ready.json()["type"] == "/problems/design-mismatch"
    assert ready.json()["detail"] == "the database is behind the design"
    assert ready.json()["checks"]["design"]["missing"] == "column notes.mood"
    # the column back (a migration): the server picks it up by itself
    await add_column(wired.target, "notes", "mood")
    assert (await wired.get("/readyz")).status_code == 200
    assert (await wired.get("/v1/notes")).status_code == 200
    again = await wired.post("/v1/notes", json={"text": "back", "mood": "glad"})
    assert again.status_code == 201, again.text


@pytest.mark.anyio
async def test_a_column_the_design_does_not_know_is_compatible(wired: Any) -> None:
    await add_column(wired.target, "notes", "extra")
    assert (await wired.get("/readyz")).status_code == 200
    created = await wired.post("/v1/notes", json={"text": "hello"})
    assert created.status_code == 201, created.text
