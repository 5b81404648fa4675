"""API fixtures: a whole app (engine, tables, Service, build_app) per test, on every dialect.

`make_api(design_text, ...)` builds one; `api` is the blog design below, seeded by the
tests that need records. Every SQL statement the engine runs is recorded in `api.statements`.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from charpente.design.model import Design
from charpente.http.app import build_app
from charpente.loader import load_design_text
from charpente.runtime.auth import Accounts
from charpente.runtime.hooks import Hooks
from charpente.runtime.passwords import PasswordHasher
from charpente.runtime.ratelimit import Limiter
from charpente.runtime.service import Service
from charpente.sql.authstore import SqlAuthStore
from charpente.sql.database import SqlDatabase
from charpente.sql.engine import create_engine
from charpente.sql.schema import build_metadata

# Tests import the scenario helpers beside this file (`import api_scenarios`).
sys.path.insert(0, str(Path(__file__).parent))

PASSWORD = "correct horse battery staple"
# Tests hash with cheap parameters; the engine's defaults (OWASP's) are tested in runtime/.
FAST_HASHER = PasswordHasher(time_cost=1, memory_kib=1024)

BLOG = """
charpente: 1
name: blog
api_version: 1
resources:
  users:
    access: {read: true, create: true, update: true, delete: true}
    fields:
      handle: {type: string, required: true, unique: true, max_length: 30}
      secret: {type: string, writeonly: true}
  posts:
    access: {read: true, create: true, update: true, delete: true}
    fields:
      author: {ref: users, required: true}
      editor: {ref: users, on_delete: set_null}
      title: {type: string, required: true, max_length: 100}
      score: {type: int}
      price: {type: decimal, precision: 30, scale: 2}
      like_count: {count: likes.post}
    checks: [score >= 0]
  likes:
    access: {read: true, create: true, update: true, delete: true}
    fields:
      post: {ref: posts, required: true, on_delete: cascade}
      user: {ref: users, required: true}
    unique: [[post, user]]
  notes:
    require_if_match: true
    access: {read: true, create: true, update: true, delete: true}
    fields:
      text: {type: string, required: true, max_length: 50}
"""


@dataclass
class Api:
    """One running app and what tests look at around it."""

    client: httpx.AsyncClient
    engine: AsyncEngine
    service: Service
    design: Design
    dialect: str
    accounts: Accounts
    statements: list[str] = field(default_factory=list)
    ids: dict[str, str] = field(default_factory=dict)  # account ids by email

    async def sign_in(
        self, email: str, role: str = "", password: str = PASSWORD, **profile: Any
    ) -> dict[str, str]:
        """Make an account (with `profile` fields) and sign it in: Authorization headers."""
        role = role or self.design.auth.roles[0]
        record = await self.accounts.create_account(email, role, password, profile)
        pair = await self.accounts.token(
            {"grant_type": "password", "username": email, "password": password}
        )
        self.ids[email] = str(record["id"])
        return {"Authorization": f"Bearer {pair.access_token}"}

    async def create(self, resource: str, body: dict[str, Any]) -> dict[str, Any]:
        """POST a record that must be created; its JSON."""
        response = await self.client.post(f"/v1/{resource}", json=body)
        assert response.status_code == 201, response.text
        record: dict[str, Any] = response.json()
        return record

    async def count_rows(self, table: str) -> int:
        """Rows in a table, read straight from the database."""
        async with self.engine.connect() as conn:
            stmt = sa.select(sa.func.count()).select_from(sa.table(table))
            return int((await conn.execute(stmt)).scalar_one())


MakeApi = Callable[..., Awaitable[Api]]


@pytest.fixture
async def make_api(db_target: Any, anyio_backend: str) -> AsyncIterator[MakeApi]:
    """Build apps on this test's database: `await make_api(design_text, hooks=...)`."""
    async with _factory(db_target) as make:
        yield make


@pytest.fixture
async def make_pg_api(pg_target: Any, anyio_backend: str) -> AsyncIterator[MakeApi]:
    """Like make_api, on PostgreSQL only (for what only a server can show: concurrency)."""
    async with _factory(pg_target) as make:
        yield make


@contextlib.asynccontextmanager
async def _factory(target: Any) -> AsyncIterator[MakeApi]:
    built: list[Api] = []

    async def make(
        design_text: str = BLOG,
        *,
        hooks: Hooks | None = None,
        max_body_bytes: int = 1_048_576,
        limiter: Limiter | None = None,
        url: str | None = None,
        base_url: str = "http://test",
    ) -> Api:
        design = load_design_text(design_text)
        engine = create_engine(url or target.url, schema=target.schema)
        if url is None:
            async with engine.begin() as conn:
                await conn.run_sync(build_metadata(design).create_all)
        database = SqlDatabase(engine, design)
        service = Service(design, database, hooks=hooks)
        accounts = Accounts(
            design, service, SqlAuthStore(database), clock=service.clock, hasher=FAST_HASHER
        )
        await accounts.start()
        app = build_app(
            service, design, accounts=accounts, limiter=limiter, max_body_bytes=max_body_bytes
        )
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        client = httpx.AsyncClient(transport=transport, base_url=base_url)
        api = Api(client, engine, service, design, target.dialect, accounts)
        sa.event.listen(engine.sync_engine, "before_cursor_execute", _recorder(api.statements))
        built.append(api)
        return api

    try:
        yield make
    finally:
        for api in built:
            await api.accounts.stop()
            await api.client.aclose()
            await api.engine.dispose()


@pytest.fixture
async def api(make_api: MakeApi) -> Api:
    """The blog design on a fresh database."""
    return await make_api()


def _recorder(statements: list[str]) -> Callable[..., None]:
    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        statements.append(statement)

    return record
