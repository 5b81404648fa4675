"""GET /v1/{resource}/{id}/history and ?as_of=: the audit history over HTTP, under the read
rules (deleted records' past for admins only), and time travel."""

from __future__ import annotations

import datetime
from typing import Any

import pytest

pytestmark = pytest.mark.anyio

DIARY = """
charpente: 1
name: diary
auth: {signup: open, roles: [member, admin]}
resources:
  entries:
    access:
      read: owner == auth.id or public == true
      create: auth.id != null
      update: owner == auth.id
      delete: owner == auth.id
      fields:
        mood: {read: owner == auth.id}
    fields:
      owner: {ref: accounts, default: auth.id, immutable: true}
      title: {type: string, required: true}
      mood: {type: string}
      public: {type: bool, default: false}
      pin: {type: string, writeonly: true}
"""


async def diary(make_api: Any) -> tuple[Any, dict[str, str], dict[str, str], dict[str, str]]:
    api = await make_api(DIARY)
    ada = await api.sign_in("ada@example.com")
    bob = await api.sign_in("bob@example.com")
    root = await api.sign_in("root@example.com", role="admin")
    return api, ada, bob, root


async def write(api: Any, ada: dict[str, str]) -> str:
    """An entry created then changed twice: 3 events."""
    made = await api.client.post(
        "/v1/entries",
        json={"title": "first", "mood": "calm", "pin": "0000"},
        headers={**ada, "X-Request-ID": "req-create"},
    )
    assert made.status_code == 201, made.text
    entry = made.json()["id"]
    for patch in ({"title": "second"}, {"title": "third", "mood": "glad", "public": True}):
        changed = await api.client.patch(f"/v1/entries/{entry}", json=patch, headers=ada)
        assert changed.status_code == 200, changed.text
    return str(entry)


async def test_the_history_is_newest_first_with_changes_actor_and_request(make_api: Any) -> None:
    api, ada, _, _ = await diary(make_api)
    entry = await write(api, ada)
    response = await api.client.get(f"/v1/entries/{entry}/history", headers=ada)
    assert response.status_code == 200
    events = response.json()["data"]
    assert [e["action"] for e in events] == ["updated", "updated", "created"]
    assert [e["version"] for e in events] == [3, 2, 1]
    assert events[0]["changes"] == {"title": "third", "mood": "glad", "public": True}
    assert events[2]["changes"] == {
        "owner": api.ids["ada@example.com"],
        "title": "first",
        "mood": "calm",
        "public": False,
        "pin": "[redacted]",  # writeonly: that it was set, never its value
    }
    assert {e["actor"] for e in events} == {api.ids["ada@example.com"]}
    assert events[2]["request_id"] == "req-create"
    assert set(events[0]) == {"id", "action", "at", "version", "actor", "request_id", "changes"}


async def test_the_history_pages_with_a_cursor_and_a_link(make_api: Any) -> None:
    api, ada, _, _ = await diary(make_api)
    entry = await write(api, ada)
    first = await api.client.get(f"/v1/entries/{entry}/history?limit=2", headers=ada)
    body = first.json()
    assert [e["version"] for e in body["data"]] == [3, 2]
    cursor = body["page"]["next_cursor"]
    assert cursor is not None
    assert f"cursor={cursor}" in first.headers["link"]
    second = await api.client.get(
        f"/v1/entries/{entry}/history?limit=2&cursor={cursor}", headers=ada
    )
    assert [e["version"] for e in second.json()["data"]] == [1]
    assert second.json()["page"]["next_cursor"] is None


@pytest.mark.parametrize(
    ("query", "status"),
    [("limit=0", 422), ("limit=101", 422), ("cursor=nope", 400), ("sort=id", 400)],
)
async def test_bad_history_parameters_are_refused(make_api: Any, query: str, status: int) -> None:
    api, ada, _, _ = await diary(make_api)
    entry = await write(api, ada)
    response = await api.client.get(f"/v1/entries/{entry}/history?{query}", headers=ada)
    assert response.status_code == status


async def test_the_history_follows_the_read_rule_and_hides_hidden_fields(make_api: Any) -> None:
    api, ada, bob, _ = await diary(make_api)
    private = await api.client.post("/v1/entries", json={"title": "mine"}, headers=ada)
    hidden = private.json()["id"]
    for caller in (bob, {}):  # another member, anonymous: as if it did not exist
        response = await api.client.get(f"/v1/entries/{hidden}/history", headers=caller)
        assert response.status_code == 404
    entry = await write(api, ada)  # public now: bob reads it, but not ada's mood
    response = await api.client.get(f"/v1/entries/{entry}/history", headers=bob)
    assert response.status_code == 200
    assert all("mood" not in e["changes"] for e in response.json()["data"])


async def test_a_deleted_records_past_is_for_admins_only(make_api: Any) -> None:
    api, ada, _, root = await diary(make_api)
    entry = await write(api, ada)
    assert (await api.client.delete(f"/v1/entries/{entry}", headers=ada)).status_code == 204
    assert (await api.client.get(f"/v1/entries/{entry}/history", headers=ada)).status_code == 404
    response = await api.client.get(f"/v1/entries/{entry}/history", headers=root)
    assert response.status_code == 200
    assert [e["action"] for e in response.json()["data"]][:1] == ["deleted"]
    missing = "01890000-0000-7000-8000-000000000000"
    assert (await api.client.get(f"/v1/entries/{missing}/history", headers=root)).status_code == 404


async def test_as_of_rebuilds_the_record_as_it_was(make_api: Any) -> None:
    api, ada, _, root = await diary(make_api)
    entry = await write(api, ada)
    events = (await api.client.get(f"/v1/entries/{entry}/history", headers=ada)).json()["data"]
    created_at = events[2]["at"]
    then = await api.client.get(f"/v1/entries/{entry}", params={"as_of": created_at}, headers=ada)
    assert then.status_code == 200
    assert "etag" not in then.headers
    state = then.json()
    assert state["title"] == "first"
    assert state["mood"] == "calm"
    assert state["version"] == 1
    assert "pin" not in state
    second = await api.client.get(
        f"/v1/entries/{entry}", params={"as_of": events[1]["at"], "fields": "title"}, headers=ada
    )
    assert second.json() == {"title": "second"}
    now = await api.client.get(f"/v1/entries/{entry}", headers=ada)
    later = datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=1)
    future = await api.client.get(
        f"/v1/entries/{entry}", params={"as_of": later.isoformat()}, headers=ada
    )
    current = now.json()
    assert {k: future.json()[k] for k in ("title", "mood", "public", "version")} == {
        k: current[k] for k in ("title", "mood", "public", "version")
    }
    before = datetime.datetime.fromisoformat(created_at) - datetime.timedelta(seconds=1)
    too_early = await api.client.get(
        f"/v1/entries/{entry}", params={"as_of": before.isoformat()}, headers=ada
    )
    assert too_early.status_code == 404
    assert (await api.client.delete(f"/v1/entries/{entry}", headers=ada)).status_code == 204
    gone = await api.client.get(
        f"/v1/entries/{entry}", params={"as_of": later.isoformat()}, headers=root
    )
    assert gone.status_code == 404  # deleted by then
    past = await api.client.get(f"/v1/entries/{entry}", params={"as_of": created_at}, headers=root)
    assert past.json()["title"] == "first"  # an admin reads a deleted record's past


@pytest.mark.parametrize(
    "query",
    [
        {"as_of": "yesterday"},
        {"as_of": "2026-01-01T00:00:00"},  # no offset: which time?
        {"as_of": "2026-13-01T00:00:00Z"},
        {"as_of": "2026-01-01T00:00:00Z", "expand": "owner"},
    ],
)
async def test_a_bad_as_of_is_a_400(make_api: Any, query: dict[str, str]) -> None:
    api, ada, _, _ = await diary(make_api)
    entry = await write(api, ada)
    response = await api.client.get(f"/v1/entries/{entry}", params=query, headers=ada)
    assert response.status_code == 400, response.text
