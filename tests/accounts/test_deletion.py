"""Deleting an account over real HTTP: by its owner (password or a recent sign-in) or an
admin; the design's references decide what happens to its records; its tokens end; the
history keeps the events with the account's own values redacted."""

from __future__ import annotations

import datetime
import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from backend import PASSWORD, Backend, running_backend, table
from smtpbox import SmtpServer

from charpente.sql.engine import create_engine

pytestmark = pytest.mark.anyio

DESIGN = """
charpente: 1
name: notes
api_version: 1
auth:
  signup: open
  app_name: Notes
  app_url: https://notes.example
  profile:
    display_name: {type: string, max_length: 50}
limits:
  auth: 600/minute per ip
resources:
  notes:
    access: {read: true, create: auth != null}
    fields:
      owner: {ref: accounts, default: auth.id, on_delete: cascade}
      text: {type: string, max_length: 100}
  comments:
    access: {read: true, create: auth != null}
    fields:
      author: {ref: accounts, default: auth.id, on_delete: set_null}
      text: {type: string, max_length: 100}
  invoices:
    access: {read: true, create: auth != null}
    fields:
      customer: {ref: accounts, default: auth.id, on_delete: restrict}
      total: {type: int}
"""


@pytest.fixture
async def app(
    db_target: Any, smtp: SmtpServer, tmp_path: Path, anyio_backend: str
) -> AsyncIterator[Backend]:
    async with running_backend(db_target, smtp, tmp_path, DESIGN) as running:
        yield running


def unique(name: str) -> str:
    return f"{name}@d{uuid.uuid4().hex[:12]}.example"


async def member(app: Backend, name: str) -> tuple[str, dict[str, str], str]:
    email = unique(name)
    body = {"email": email, "password": PASSWORD, "display_name": f"{name.title()} Lovelace"}
    created = await app.client.post("/v1/auth/signup", json=body)
    assert created.status_code == 201, created.text
    headers = {"Authorization": f"Bearer {(await app.pair(email))['access_token']}"}
    return email, headers, str(created.json()["id"])


async def delete_me(app: Backend, headers: dict[str, str], body: object = None) -> Any:
    return await app.client.request("DELETE", "/v1/auth/me", json=body, headers=headers)


async def test_an_owner_deletes_their_account_and_its_records_follow_the_design(
    app: Backend,
) -> None:
    email, headers, ada = await member(app, "ada")
    note = await app.client.post("/v1/notes", json={"text": "mine"}, headers=headers)
    comment = await app.client.post("/v1/comments", json={"text": "hi"}, headers=headers)
    assert note.status_code == comment.status_code == 201
    await app.client.patch(
        f"/v1/accounts/{ada}",
        json={"display_name": "Ada King"},
        headers={**headers, "Content-Type": "application/merge-patch+json"},
    )

    wrong = await delete_me(app, headers, {"password": "not it at all"})
    assert wrong.status_code == 422
    done = await delete_me(app, headers, {"password": PASSWORD})
    assert done.status_code == 204, done.text

    assert (await app.me(headers["Authorization"].split()[1])).status_code == 401
    assert (await app.sign_in(email)).status_code == 400
    assert (await app.client.get(f"/v1/notes/{note.json()['id']}")).status_code == 404
    kept = await app.client.get(f"/v1/comments/{comment.json()['id']}")
    assert kept.json()["author"] is None  # set_null: the comment stays, without its author

    rows = await table(app.settings, "charpente_events")
    events = [e for e in rows if str(e["record_id"]).replace("-", "") == ada.replace("-", "")]
    assert len(events) >= 3  # created, updated, deleted: what happened is kept
    text = json.dumps([(e["changes"], e["record"]) for e in events])
    assert email not in text
    assert "Lovelace" not in text
    assert "King" not in text
    assert any(json.loads(e["changes"]).get("role") == "member" for e in events)
    assert "account_deleted" in [e for e, _ in await app.events()]
    for name in ("charpente_passwords", "charpente_sessions", "charpente_refresh_tokens"):
        left = [r for r in await table(app.settings, name) if ada.replace("-", "") in str(r)]
        assert left == [], name


async def test_a_recent_sign_in_is_enough_and_an_old_one_is_not(app: Backend) -> None:
    _, headers, ada = await member(app, "ada")
    _, old_headers, bob = await member(app, "bob")
    engine = create_engine(app.settings.database_url, schema=app.settings.database_schema)
    try:
        async with engine.begin() as conn:
            database = app.accounts.service.database
            database = getattr(database, "inner", database)  # under the shape log's counting
            sessions = database.metadata_tables["charpente_sessions"]
            long_ago = datetime.datetime.now(datetime.UTC) - datetime.timedelta(hours=1)
            await conn.execute(
                sa.update(sessions).where(sessions.c.account == bob).values(created_at=long_ago)
            )
    finally:
        await engine.dispose()

    refused = await delete_me(app, old_headers)
    assert refused.status_code == 422
    assert refused.json()["errors"][0]["field"] == "password"
    assert (await delete_me(app, headers)).status_code == 204
    assert (await app.client.get(f"/v1/accounts/{ada}", headers=old_headers)).status_code == 404


async def test_a_restricting_reference_keeps_the_account(app: Backend) -> None:
    email, headers, _ = await member(app, "ada")
    invoice = await app.client.post("/v1/invoices", json={"total": 10}, headers=headers)
    assert invoice.status_code == 201
    refused = await delete_me(app, headers, {"password": PASSWORD})
    assert refused.status_code == 409
    assert "invoices" in refused.json()["detail"]
    assert (await app.sign_in(email)).status_code == 200


async def test_admins_delete_accounts_and_nobody_else_does(app: Backend) -> None:
    _, ada_headers, ada = await member(app, "ada")
    _, _, bob = await member(app, "bob")
    root = unique("root")
    await app.accounts.create_account(root, "admin", PASSWORD)
    admin = {"Authorization": f"Bearer {(await app.pair(root))['access_token']}"}

    refused = await app.client.delete(f"/v1/auth/accounts/{bob}", headers=ada_headers)
    assert refused.status_code == 403
    done = await app.client.delete(f"/v1/auth/accounts/{bob}", headers=admin)
    assert done.status_code == 204
    again = await app.client.delete(f"/v1/auth/accounts/{bob}", headers=admin)
    assert again.status_code == 404
    detail = [d for e, d in await app.events() if e == "account_deleted"][-1]
    assert detail is not None
    assert detail.startswith("by admin ")
    assert (await app.client.get(f"/v1/accounts/{ada}", headers=ada_headers)).status_code == 200
