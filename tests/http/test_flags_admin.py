"""Changing flags at run time: the admin API, the stored history, every process told through
the bus within a second, the `flag.changed` event, and live streams judged again."""

from __future__ import annotations

import asyncio
import time

import httpx
import msgspec
import pytest

from charpente.bus.memory import MemoryBus
from charpente.http.app import build_app
from charpente.runtime.flag_control import FlagControl, FlagSync
from charpente.runtime.service import Service
from charpente.sql.database import SqlDatabase
from charpente.sql.flagstore import SqlFlagStore

DESIGN = """
charpente: 1
name: feed
auth: {roles: [member, admin]}
flags:
  reposts: {rollout: 0%, owner: feed team, expires: 2027-03-01}
  layout: {default: true, variants: {a: 50%, b: 50%}}
resources:
  posts:
    fields: {body: text, shared: bool, rank: int}
    access:
      read: flag("reposts") or shared == false
      create: true
"""

pytestmark = pytest.mark.anyio


class Node:
    """One serve process: its own Service (and flag board) on the shared database."""

    def __init__(self, api, bus: MemoryBus, database: SqlDatabase | None = None) -> None:
        self.service = api.service if database is None else Service(api.design, database)
        store = SqlFlagStore(self.service.database)
        self.control = FlagControl(api.design, self.service.flags, store, bus=bus)
        self.sync = FlagSync(self.control)
        app = build_app(self.service, api.design, accounts=api.accounts, flags=self.control)
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        self.client = httpx.AsyncClient(transport=transport, base_url="http://test")


@pytest.fixture
async def feed(make_api):
    api = await make_api(DESIGN)
    api.bus = MemoryBus()
    api.node = Node(api, api.bus)
    await api.node.sync.start()
    api.admin = await api.sign_in("root@example.com", "admin")
    api.member = await api.sign_in("ann@example.com", "member")
    await api.create("posts", {"body": "plain", "shared": False, "rank": 1})
    await api.create("posts", {"body": "repost", "shared": True, "rank": 2})
    yield api
    await api.node.sync.stop()
    await api.node.client.aclose()


async def _patch(api, name: str, body: object, headers=None) -> httpx.Response:
    return await api.node.client.patch(
        f"/v1/_flags/{name}", json=body, headers=api.admin if headers is None else headers
    )


async def test_only_admins_see_and_change_flags(feed):
    client = feed.node.client
    assert (await client.get("/v1/_flags")).status_code == 401
    assert (await client.get("/v1/_flags", headers=feed.member)).status_code == 403
    assert (await _patch(feed, "reposts", {"rollout": 5}, feed.member)).status_code == 403
    response = await client.get("/v1/_flags", headers=feed.admin)
    assert response.status_code == 200
    names = [f["name"] for f in response.json()["data"]]
    assert names == ["layout", "reposts"]


async def test_a_flag_shows_its_setting_and_its_design_defaults(feed):
    response = await feed.node.client.get("/v1/_flags/reposts", headers=feed.admin)
    assert response.json() == {
        "name": "reposts",
        "default": False,
        "rollout": 0,
        "allow": [],
        "variants": {},
        "by": "account",
        "group": "reposts",
        "expires": "2027-03-01",
        "owner": "feed team",
        "description": None,
        "design": {"default": False, "rollout": 0, "allow": [], "variants": {}},
        "changed_at": None,
        "changed_by": None,
    }


async def test_a_change_takes_effect_at_once_and_is_stored(feed):
    client = feed.node.client
    listed = await client.get("/v1/posts")
    assert [p["body"] for p in listed.json()["data"]] == ["plain"]
    response = await _patch(feed, "reposts", {"rollout": "100%"})
    assert response.status_code == 200, response.text
    assert response.json()["rollout"] == 100
    assert response.json()["changed_by"] == feed.ids["root@example.com"]
    listed = await client.get("/v1/posts", params={"sort": "rank"})
    assert [p["body"] for p in listed.json()["data"]] == ["plain", "repost"]
    stored = await SqlFlagStore(feed.service.database).stored()
    assert [(s.name, s.setting.rollout) for s in stored if s.setting] == [("reposts", 100)]
    assert sorted(s.name for s in stored) == ["layout", "reposts"]  # each seen, for hygiene


async def test_every_change_leaves_who_before_and_after_in_the_history(feed):
    await _patch(feed, "reposts", {"rollout": 10})
    await _patch(feed, "reposts", {"rollout": 50, "allow": ["member"]})
    response = await feed.node.client.get("/v1/_flags/reposts/history", headers=feed.admin)
    entries = response.json()["data"]
    assert [(e["before"]["rollout"], e["after"]["rollout"]) for e in entries] == [
        (10, 50),
        (0, 10),
    ]
    assert entries[0]["after"]["allow"] == ["member"]
    assert {e["actor"] for e in entries} == {feed.ids["root@example.com"]}


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        ({"rollout": 101}, "rollout: expected a whole percent from 0 to 100, or null"),
        ({"default": "yes"}, "default: expected true or false"),
        ({"allow": ["boss"]}, "allow: expected a list of roles among member, admin"),
        ({"variants": {"a": 50}}, "variants: this flag has no variants"),
        ({"rolout": 5}, "unknown key 'rolout'"),
        ({}, "give at least one of default, rollout, allow, variants"),
        ([1], "the body must be a JSON object"),
    ],
)
async def test_a_wrong_change_is_refused_with_what_is_wrong(feed, body, detail):
    response = await _patch(feed, "reposts", body)
    assert response.status_code == 400
    assert detail in response.json()["detail"]


async def test_variant_shares_change_together(feed):
    bad = await _patch(feed, "layout", {"variants": {"a": 60, "b": 30}})
    assert "whole percents adding up to 100" in bad.json()["detail"]
    good = await _patch(feed, "layout", {"variants": {"a": "90%", "b": 10}})
    assert good.json()["variants"] == {"a": 90, "b": 10}


async def test_an_unknown_flag_is_404_and_a_body_must_be_json(feed):
    assert (await _patch(feed, "nope", {"rollout": 5})).status_code == 404
    response = await feed.node.client.patch(
        "/v1/_flags/reposts",
        content=b"rollout=5",
        headers={**feed.admin, "Content-Type": "text/plain"},
    )
    assert response.status_code == 415


async def test_another_process_follows_a_change_within_a_second(feed):
    database = SqlDatabase(feed.engine, feed.design)
    other = Node(feed, feed.bus, database)
    await other.sync.start()
    try:
        assert other.service.flags.settings["reposts"].rollout == 0
        started = time.monotonic()
        await _patch(feed, "reposts", {"rollout": 100})
        while other.service.flags.settings["reposts"].rollout != 100:
            assert time.monotonic() - started < 1.0, "the other process did not follow"
            await asyncio.sleep(0.01)
        listed = await other.client.get("/v1/posts")
        assert len(listed.json()["data"]) == 2
    finally:
        await other.sync.stop()
        await other.client.aclose()
        await database.close()  # its connections, before the schema is dropped


async def test_a_change_publishes_a_flag_changed_event(feed):
    subscription = await feed.bus.subscribe()
    await _patch(feed, "reposts", {"rollout": 25})
    message = await asyncio.wait_for(anext(aiter(subscription)), 1)
    await subscription.close()
    assert message.key == "flag.changed"
    event = msgspec.json.decode(message.body)
    assert event["type"] == "charpente.flag.changed"
    assert event["subject"] == "reposts"
    assert event["data"]["before"]["rollout"] == 0
    assert event["data"]["after"]["rollout"] == 25
    assert event["data"]["actor"] == feed.ids["root@example.com"]
