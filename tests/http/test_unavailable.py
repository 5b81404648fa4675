"""A busy or unreachable database answers 503 with Retry-After; a task's nested use is safe."""

from __future__ import annotations

import sqlite3
from typing import Any

import anyio
import httpx
import pytest
import sqlalchemy as sa

from charpente.compile.plan import GetQuery
from charpente.design.model import Design
from charpente.http.app import build_app
from charpente.loader import load_design_text
from charpente.runtime.service import Service
from charpente.sql.database import SqlDatabase
from charpente.sql.engine import create_engine
from charpente.sql.schema import build_metadata

NOTES = """
charpente: 1
name: notes
api_version: 1
resources:
  notes:
    access: {read: true, create: true, update: true, delete: true}
    fields:
      text: {type: string, required: true, max_length: 50}
"""


def _short_busy_timeout(dbapi_connection: Any, *_: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA busy_timeout=50")
    cursor.close()


async def _sqlite_app(path: str) -> tuple[Any, sa.ext.asyncio.AsyncEngine, Design]:
    design = load_design_text(NOTES)
    engine = create_engine(f"sqlite+aiosqlite:///{path}")
    sa.event.listen(engine.sync_engine, "checkout", _short_busy_timeout)
    async with engine.begin() as conn:
        await conn.run_sync(build_metadata(design).create_all)
    service = Service(design, SqlDatabase(engine, design))
    return build_app(service, design), engine, design


@pytest.mark.anyio
async def test_a_write_while_another_process_holds_the_sqlite_lock_answers_503(
    tmp_path: Any, anyio_backend: str
) -> None:
    path = str(tmp_path / "busy.db")
    app, engine, _ = await _sqlite_app(path)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    holder = sqlite3.connect(path, isolation_level=None)
    try:
        holder.execute("BEGIN IMMEDIATE")
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            response = await client.post("/v1/notes", json={"text": "hi"})
            holder.execute("ROLLBACK")
            after = await client.post("/v1/notes", json={"text": "hi"})
    finally:
        holder.close()
        await engine.dispose()
    assert response.status_code == 503, response.text
    assert response.headers["retry-after"] == "5"
    assert response.headers["content-type"] == "application/problem+json"
    assert after.status_code == 201


@pytest.mark.anyio
async def test_an_unreachable_postgresql_answers_503_and_keeps_serving(make_pg_api: Any) -> None:
    api = await make_pg_api(NOTES, url="postgresql+asyncpg://postgres@127.0.0.1:1/test")
    listed = await api.client.get("/v1/notes")
    created = await api.client.post("/v1/notes", json={"text": "hi"})
    assert listed.status_code == 503, listed.text
    assert listed.headers["retry-after"] == "5"
    assert created.status_code == 503
    assert (await api.client.get("/v1/notes")).status_code == 503


@pytest.mark.anyio
async def test_a_transaction_inside_a_transaction_fails_at_once(make_api: Any) -> None:
    api = await make_api(NOTES)
    database = api.service.database
    async with database.transaction():
        with pytest.raises(RuntimeError, match="already open"):
            async with database.transaction():
                pass


@pytest.mark.anyio
async def test_reads_inside_as_many_transactions_as_connections_do_not_deadlock(
    make_api: Any,
) -> None:
    api = await make_api(NOTES)
    created = await api.create("notes", {"text": "hi"})
    database = api.service.database
    query = GetQuery("notes", created["id"])
    found: list[Any] = []

    async def read_inside() -> None:
        async with database.transaction():
            await anyio.sleep(0.01)  # every task holds its transaction before reading
            found.append(await database.select_one(query))

    with anyio.fail_after(10):
        async with anyio.create_task_group() as group:
            for _ in range(database._gate._value):  # as many as the gate lets through
                group.start_soon(read_inside)
    assert [row["text"] for row in found] == ["hi"] * len(found)
    assert found
