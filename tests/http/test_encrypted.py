"""Encrypted fields, through the app that `charpente serve` builds, on every dialect: values
are stored sealed and read back in clear, never filtered or sorted, keys rotate, the design
refuses what cannot work on sealed values, and the server refuses to start without keys."""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
import sqlalchemy as sa

from charpente.errors import ConfigError, DesignError, MigrationError
from charpente.loader import load_design_text
from charpente.runtime.secrets import SealError
from charpente.settings import Settings
from charpente.sql.engine import create_engine
from charpente.wiring import (
    apply_database_migration,
    build_application,
    is_database_current,
    load_configured_design,
    plan_database_migration,
    reseal_encrypted_values,
)

KEY_1 = "k1:" + base64.b64encode(bytes(range(32))).decode()
KEY_2 = "k2:" + base64.b64encode(bytes(range(100, 132))).decode()
SECRET = "the launch code is 0451"

VAULT = """\
charpente: 1
name: vault
api_version: 1
resources:
  notes:
    access: {read: true, create: true, update: true, delete: true}
    fields:
      title: {type: string, required: true}
      body: {type: text, encrypted: true, max_length: 200}
      data: {type: json, encrypted: true}
      contact: {type: email, encrypted: true}
  pins:
    access: {read: true, create: true, update: true, delete: true}
    fields:
      note: {ref: notes, required: true, on_delete: cascade}
"""


# --- the design ----------------------------------------------------------------------------


def problems_of(text: str) -> list[str]:
    with pytest.raises(DesignError) as caught:
        load_design_text(text)
    return [p.message for p in caught.value.problems if p.severity == "error"]


def with_notes(extra: str) -> str:
    return VAULT.replace("  pins:\n", extra + "  pins:\n", 1)


def test_encrypted_is_a_field_option_of_text_kinds_and_json() -> None:
    design = load_design_text(VAULT)
    fields = {f.name: f.encrypted for f in design.resources["notes"].fields}
    assert fields == {"title": False, "body": True, "data": True, "contact": True}
    refused = problems_of(
        VAULT.replace("title: {type: string,", "title: {type: int, encrypted: true,")
    )
    assert refused == [
        "`encrypted` does not apply to an int field (only to email, json, string, text, url)"
    ]


def test_an_encrypted_field_cannot_be_unique_indexed_checked_or_read_by_a_rule() -> None:
    unique = VAULT.replace(
        "encrypted: true, max_length", "encrypted: true, unique: true, max_length"
    )
    assert problems_of(unique) == [
        "an encrypted field cannot be unique: its stored values never repeat"
    ]
    indexed = problems_of(with_notes("    indexes: [[body]]\n    unique: [[title, contact]]\n"))
    assert indexed == [
        "`body` is encrypted: it cannot be in an index (its stored values are sealed)",
        "`contact` is encrypted: it cannot be in a unique constraint "
        "(its stored values are sealed)",
    ]
    checked = problems_of(with_notes("    checks: [body != title]\n"))
    assert checked == ["a check cannot read encrypted fields: `body`"]
    ruled = VAULT.replace(
        "  pins:\n    access: {read: true,",
        "  pins:\n    access: {read: \"exists(notes, id == pins.note and body == 'x')\",",
    )
    assert problems_of(ruled) == ["an access rule cannot read encrypted fields: `notes.body`"]


# --- the app ----------------------------------------------------------------------------------


@pytest.fixture
def settings(db_target: Any, tmp_path: Path) -> Settings:
    design = tmp_path / "vault.yaml"
    design.write_text(VAULT, encoding="utf-8")
    return Settings(
        database_url=db_target.url,
        database_schema=db_target.schema,
        design_path=design,
        secret_keys=KEY_1,
    )


@contextlib.asynccontextmanager
async def serving(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """The app `charpente serve` runs, started and stopped through its lifespan."""
    app: Any = build_application(settings)
    to_app, app_inbox = anyio.create_memory_object_stream[dict[str, Any]](4)
    app_outbox, from_app = anyio.create_memory_object_stream[dict[str, Any]](4)
    scope = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(app, scope, app_inbox.receive, app_outbox.send)
        await to_app.send({"type": "lifespan.startup"})
        assert (await from_app.receive())["type"] == "lifespan.startup.complete"
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        try:
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
                yield client
        finally:
            await to_app.send({"type": "lifespan.shutdown"})
            assert (await from_app.receive())["type"] == "lifespan.shutdown.complete"


async def migrate(settings: Settings) -> None:
    await apply_database_migration(settings, load_configured_design(settings))


async def raw_rows(settings: Settings, query: str) -> list[dict[str, Any]]:
    """Rows straight from the database, as the engine stored them."""
    engine = create_engine(settings.database_url, schema=settings.database_schema)
    try:
        async with engine.connect() as conn:
            return [dict(row._mapping) for row in await conn.execute(sa.text(query))]
    finally:
        await engine.dispose()


NOTE = {
    "title": "plans",
    "body": SECRET,
    "data": {"pin": 451, "tags": ["x"]},
    "contact": "ada@example.com",
}


@pytest.mark.anyio
async def test_values_are_stored_sealed_and_read_back_in_clear(settings: Settings) -> None:
    await migrate(settings)
    async with serving(settings) as client:
        created = await client.post("/v1/notes", json=NOTE)
        assert created.status_code == 201, created.text
        note = created.json()
        assert {k: note[k] for k in NOTE} == NOTE
        pin = (await client.post("/v1/pins", json={"note": note["id"]})).json()

        read = (await client.get(f"/v1/notes/{note['id']}")).json()
        listed = (await client.get("/v1/notes")).json()["data"]
        expanded = (await client.get(f"/v1/pins/{pin['id']}?expand=note")).json()["note"]
        picked = (await client.get(f"/v1/notes/{note['id']}?fields=id,body")).json()
        assert read["body"] == listed[0]["body"] == expanded["body"] == SECRET
        assert read["data"] == expanded["data"] == NOTE["data"]
        assert picked == {"id": note["id"], "body": SECRET}

        patched = await client.patch(f"/v1/notes/{note['id']}", json={"body": "moved to 0452"})
        assert patched.json()["body"] == "moved to 0452"
        assert patched.json()["contact"] == "ada@example.com"

    [row] = await raw_rows(settings, "SELECT title, body, data, contact FROM notes")
    assert row["title"] == "plans"  # not encrypted: stored as it is
    for name in ("body", "data", "contact"):
        assert row[name].startswith("v1.k1."), name
    stored = json.dumps(row)
    for clear in ("0452", "0451", "launch", "ada@", "example", "tags"):
        assert clear not in stored


@pytest.mark.anyio
async def test_filter_and_sort_on_an_encrypted_field_are_400s_naming_it(settings: Settings) -> None:
    await migrate(settings)
    async with serving(settings) as client:
        filtered = await client.get("/v1/notes", params={"filter": 'title == "a" or body == "x"'})
        assert filtered.status_code == 400
        assert filtered.json()["detail"] == "filter: encrypted fields cannot be filtered on: `body`"
        sorted_ = await client.get("/v1/notes", params={"sort": "-contact"})
        assert sorted_.status_code == 400
        assert sorted_.json()["detail"] == "sort: `contact` is encrypted and cannot be sorted"
        assert (await client.get("/v1/notes", params={"sort": "title"})).status_code == 200


@pytest.mark.anyio
async def test_an_idempotent_answer_is_stored_sealed_and_replayed_in_clear(
    settings: Settings,
) -> None:
    await migrate(settings)
    async with serving(settings) as client:
        headers = {"Idempotency-Key": "note-1"}
        first = await client.post("/v1/notes", json=NOTE, headers=headers)
        again = await client.post("/v1/notes", json=NOTE, headers=headers)
        assert first.status_code == again.status_code == 201
        assert again.content == first.content
        assert again.json()["body"] == SECRET
    [row] = await raw_rows(settings, "SELECT body FROM charpente_idempotency")
    assert b"0451" not in bytes(row["body"])


@pytest.mark.anyio
async def test_old_keys_still_open_and_reseal_moves_every_value_to_the_active_key(
    settings: Settings,
) -> None:
    await migrate(settings)
    async with serving(settings) as client:
        old = (await client.post("/v1/notes", json=NOTE)).json()
        (await client.post("/v1/notes", json={"title": "empty"})).raise_for_status()

    rotated = dataclasses.replace(settings, secret_keys=f"{KEY_2},{KEY_1}")
    async with serving(rotated) as client:
        assert (await client.get(f"/v1/notes/{old['id']}")).json()["body"] == SECRET
        (await client.post("/v1/notes", json={**NOTE, "body": "new"})).raise_for_status()
    kids = {
        r["body"].split(".")[1]
        for r in await raw_rows(settings, "SELECT body FROM notes WHERE body IS NOT NULL")
    }
    assert kids == {"k1", "k2"}

    progress: list[tuple[str, int]] = []
    design = load_configured_design(rotated)
    done = await reseal_encrypted_values(
        rotated, design, batch=1, progress=lambda *a: progress.append(a)
    )
    assert (done.checked, done.resealed) == (6, 3)  # body, data and contact of the old note
    assert sum(count for _, count in progress) == 3
    again = await reseal_encrypted_values(rotated, design, batch=100)
    assert (again.checked, again.resealed) == (6, 0)

    only_new = dataclasses.replace(settings, secret_keys=KEY_2)
    async with serving(only_new) as client:
        read = (await client.get(f"/v1/notes/{old['id']}")).json()
        assert (read["body"], read["data"]) == (SECRET, NOTE["data"])


@pytest.mark.anyio
async def test_a_value_moved_to_another_field_does_not_open(settings: Settings) -> None:
    await migrate(settings)
    async with serving(settings) as client:
        note = (await client.post("/v1/notes", json=NOTE)).json()
    engine = create_engine(settings.database_url, schema=settings.database_schema)
    async with engine.begin() as conn:
        await conn.execute(sa.text("UPDATE notes SET contact = body"))
    await engine.dispose()
    async with serving(settings) as client:
        moved = await client.get(f"/v1/notes/{note['id']}")
        assert moved.status_code == 500
        assert SECRET not in moved.text


def test_the_server_refuses_to_start_without_keys(settings: Settings) -> None:
    with pytest.raises(ConfigError) as caught:
        build_application(dataclasses.replace(settings, secret_keys=None))
    message = str(caught.value)
    assert message == (
        "the design encrypts notes.body, notes.data, notes.contact: set CHARPENTE_SECRET_KEYS "
        "to the keys that seal them (`kid:base64key`, 32 bytes each)"
    )


# --- migrations -------------------------------------------------------------------------------


def plain(text: str) -> str:
    return text.replace("title: {type: string, required: true}", "title: {type: string}")


@pytest.mark.anyio
async def test_encrypting_an_empty_column_is_a_safe_step(settings: Settings) -> None:
    assert settings.design_path is not None
    settings.design_path.write_text(plain(VAULT), encoding="utf-8")
    await migrate(settings)
    settings.design_path.write_text(
        plain(VAULT).replace("title: {type: string}", "title: {type: string, encrypted: true}"),
        encoding="utf-8",
    )
    design = load_configured_design(settings)
    assert not await is_database_current(settings, design)
    plan = await plan_database_migration(settings, design)
    assert [(s.description, str(s.safety)) for s in plan.steps] == [
        ("encrypt notes.title (it holds no value yet)", "safe")
    ]
    await apply_database_migration(settings, design, only_safe=True)
    assert await is_database_current(settings, design)


@pytest.mark.anyio
async def test_encrypting_a_column_that_holds_values_is_refused_with_the_way_forward(
    settings: Settings,
) -> None:
    assert settings.design_path is not None
    settings.design_path.write_text(plain(VAULT), encoding="utf-8")
    await migrate(settings)
    async with serving(settings) as client:
        (await client.post("/v1/notes", json={"title": "in clear"})).raise_for_status()
    settings.design_path.write_text(
        plain(VAULT).replace("title: {type: string}", "title: {type: string, encrypted: true}"),
        encoding="utf-8",
    )
    design = load_configured_design(settings)
    plan = await plan_database_migration(settings, design)
    [step] = plan.steps
    assert (step.description, str(step.safety)) == (
        "encrypt notes.title (1 stored values)",
        "needs a backfill",
    )
    with pytest.raises(MigrationError) as caught:
        await apply_database_migration(settings, design, allow_destructive=True)
    assert str(caught.value) == (
        "cannot encrypt notes.title (1 stored values): stored values are not encrypted in "
        "place: add a new encrypted field, copy the values into it, then remove this one"
    )
    assert not await is_database_current(settings, design)


@pytest.mark.anyio
async def test_reseal_names_the_field_and_record_of_a_value_that_does_not_open(
    settings: Settings,
) -> None:
    await migrate(settings)
    async with serving(settings) as client:
        note = (await client.post("/v1/notes", json=NOTE)).json()
    engine = create_engine(settings.database_url, schema=settings.database_schema)
    async with engine.begin() as conn:
        await conn.execute(sa.text("UPDATE notes SET body = 'written in clear'"))
    await engine.dispose()
    with pytest.raises(SealError) as caught:
        await reseal_encrypted_values(settings, load_configured_design(settings), batch=10)
    assert str(caught.value) == f"notes.body of {note['id']}: not a sealed value"
