"""A whole backend as `serve` builds it (wiring.build_application: the job queue's worker
embedded, email through the real SMTP server of smtpbox.py), driven over HTTP in this
process, with its lifespan running."""

from __future__ import annotations

import contextlib
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import sqlalchemy as sa
from smtpbox import Arrived, SmtpServer

from charpente.runtime.auth import Accounts
from charpente.runtime.passwords import PasswordHasher
from charpente.settings import Settings
from charpente.sql.engine import create_engine
from charpente.wiring import apply_database_migration, build_application, load_configured_design

BASE = "http://127.0.0.1:8000"
PASSWORD = "correct horse battery staple"
FAST_HASHER = PasswordHasher(time_cost=1, memory_kib=1024)
APP_URL = "https://notes.example"
DESIGN = """
charpente: 1
name: notes
api_version: 1
auth:
  signup: open
  app_name: Notes
  app_url: https://notes.example
limits:
  auth: 600/minute per ip
resources:
  notes:
    access: {read: auth != null, create: auth != null}
    fields:
      owner: {ref: accounts, default: auth.id}
      text: {type: string, max_length: 100}
"""
_LINK = re.compile(r"https://notes\.example/[a-z-]+\?token=[A-Za-z0-9_%-]+")


@dataclass
class Backend:
    client: httpx.AsyncClient
    accounts: Accounts
    smtp: SmtpServer
    settings: Settings
    tokens: dict[str, str] = field(default_factory=dict)

    async def signup(self, email: str, password: str = PASSWORD) -> httpx.Response:
        return await self.client.post(
            "/v1/auth/signup", json={"email": email, "password": password}
        )

    async def sign_in(self, email: str, password: str = PASSWORD) -> httpx.Response:
        form = {"grant_type": "password", "username": email, "password": password}
        return await self.client.post("/v1/auth/token", data=form)

    async def pair(self, email: str, password: str = PASSWORD) -> dict[str, Any]:
        answer = await self.sign_in(email, password)
        assert answer.status_code == 200, answer.text
        pair: dict[str, Any] = answer.json()
        return pair

    async def refresh(self, token: str) -> httpx.Response:
        form = {"grant_type": "refresh_token", "refresh_token": token}
        return await self.client.post("/v1/auth/token", data=form)

    async def me(self, access: str) -> httpx.Response:
        return await self.client.get("/v1/auth/me", headers={"Authorization": f"Bearer {access}"})

    async def mail(self, to: str, count: int = 1) -> list[Arrived]:
        return await self.smtp.arrival(to, count)

    def link(self, arrived: Arrived, page: str) -> str:
        """The token of the `page` link in a message (and the link is the same in HTML)."""
        [link] = set(_LINK.findall(arrived.part("plain")))
        assert link.startswith(f"{APP_URL}/{page}?token="), link
        assert link.replace("&", "&amp;") in arrived.part("html")
        return parse_qs(urlsplit(link).query)["token"][0]

    def token(self, arrived: Arrived) -> str | None:
        """The token of the link a message carries, if it carries one."""
        found = set(_LINK.findall(arrived.part("plain")))
        return parse_qs(urlsplit(found.pop()).query)["token"][0] if found else None

    async def events(self) -> list[tuple[str, str | None]]:
        entries = await self.accounts.store.log_entries(500)
        return [(e["event"], e["detail"]) for e in reversed(entries)]


@contextlib.asynccontextmanager
async def running_backend(
    target: Any, smtp: SmtpServer, folder: Path, design: str = DESIGN
) -> AsyncIterator[Backend]:
    (folder / "design.yaml").write_text(design)
    settings = Settings(
        database_url=target.url,
        database_schema=target.schema,
        design_path=folder / "design.yaml",
        smtp_url=smtp.url("plain", credentials=False, tls="none"),
        mail_from="Notes <no-reply@notes.example>",
    )
    loaded = load_configured_design(settings)
    await apply_database_migration(settings, loaded)
    app = build_application(settings, loaded)
    accounts: Accounts = app.state.accounts
    accounts.hasher = FAST_HASHER
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url=BASE) as client:
            yield Backend(client, accounts, smtp, settings)


async def table(settings: Settings, name: str) -> list[dict[str, Any]]:
    engine = create_engine(settings.database_url, schema=settings.database_schema)
    try:
        async with engine.connect() as conn:
            rows = await conn.execute(sa.text(f"SELECT * FROM {name}"))  # a test's own table name
            return [dict(row._mapping) for row in rows]
    finally:
        await engine.dispose()
