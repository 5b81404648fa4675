"""GET /v1/{resource}/changes: the stream's format, who sees what, filters and errors."""

from __future__ import annotations

import contextlib
import json

import pytest
from tests.changes.support import Cluster, Node, Sse

from charpente.http.changes import HEARTBEAT, ChangesEndpoint

pytestmark = pytest.mark.anyio


async def test_a_write_reaches_an_open_stream_as_one_server_sent_event(cluster: Cluster) -> None:
    node = await cluster.node()
    ada = await node.sign_in("ada@example.com")
    async with node.client.stream("GET", "/v1/posts/changes") as response:
        assert response.status_code == 200
        assert response.headers["content-type"] == "text/event-stream; charset=utf-8"
        assert response.headers["cache-control"] == "no-store"
        assert response.headers["x-accel-buffering"] == "no"
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["x-request-id"]
        reader = Sse(response)
        assert await reader.next() == {"retry": "3000"}
        post = await node.post(ada, body="hello")
        [event] = await cluster.relay.flush()
        frame = await reader.next()
    assert frame["id"] == event.id
    assert frame["event"] == "posts.created"
    data = json.loads(frame["data"])
    assert set(data) == {"id", "action", "version", "at", "actor", "changes", "record"}
    assert (data["id"], data["action"], data["version"]) == (post["id"], "created", 1)
    assert data["actor"] == node.ids["ada@example.com"]
    assert data["record"]["body"] == data["changes"]["body"] == "hello"
    assert data["record"]["created_at"] == post["created_at"]
    assert data["at"].endswith("Z")


async def test_each_caller_sees_only_the_posts_its_read_rule_lets_it_read(
    cluster: Cluster,
) -> None:
    node = await cluster.node()
    ada, bob, carol = await _people(node)
    follow = await node.client.post(
        "/v1/follows", json={"followee": node.ids["ada@example.com"]}, headers=bob
    )
    assert follow.status_code == 201
    async with contextlib.AsyncExitStack() as streams:
        readers = {
            who: await streams.enter_async_context(node.stream(headers=headers))
            for who, headers in (("ada", ada), ("bob", bob), ("carol", carol), ("anyone", {}))
        }
        for body, visibility in (("p", "public"), ("f", "followers"), ("x", "private")):
            await node.post(ada, body=body, visibility=visibility)
        await node.post(ada, body="end")
        await cluster.relay.flush()
        seen = {who: await _bodies(reader) for who, reader in readers.items()}
    assert seen == {
        "ada": ["p", "f", "x", "end"],
        "bob": ["p", "f", "end"],  # a follower: followers-only posts too
        "carol": ["p", "end"],  # a stranger never learns of the others
        "anyone": ["p", "end"],
    }


async def test_updates_and_deletes_follow_the_rule_with_the_relations_of_now(
    cluster: Cluster,
) -> None:
    node = await cluster.node()
    ada, bob, carol = await _people(node)
    follow = await node.client.post(
        "/v1/follows", json={"followee": node.ids["ada@example.com"]}, headers=bob
    )
    post = await node.post(ada, body="f", visibility="followers")
    await cluster.relay.flush()
    async with node.stream(headers=bob) as by_bob, node.stream(headers=carol) as by_carol:
        patched = await node.client.patch(
            f"/v1/posts/{post['id']}", json={"body": "f2"}, headers=ada
        )
        assert patched.status_code == 200
        deleted = await node.client.delete(f"/v1/posts/{post['id']}", headers=ada)
        assert deleted.status_code == 204
        await node.post(ada, body="end")
        await cluster.relay.flush()
        bob_saw = await by_bob.until_body("end")
        carol_saw = await by_carol.until_body("end")
        unfollowed = await node.client.delete(f"/v1/follows/{follow.json()['id']}", headers=bob)
        assert unfollowed.status_code == 204
        await node.post(ada, body="after", visibility="followers")
        await node.post(ada, body="end")
        await cluster.relay.flush()
        bob_saw_later = await by_bob.until_body("end")
    assert [(e["event"], e["record"]["body"]) for e in bob_saw] == [
        ("posts.updated", "f2"),
        ("posts.deleted", "f2"),  # the record as it was
        ("posts.created", "end"),
    ]
    assert bob_saw[0]["changes"] == {"body": "f2"}
    assert bob_saw[1]["changes"] == {}
    assert [e["record"]["body"] for e in carol_saw] == ["end"]
    assert [e["record"]["body"] for e in bob_saw_later] == ["end"]  # follows no more


async def test_field_rules_hide_fields_from_the_record_and_the_changes(cluster: Cluster) -> None:
    node = await cluster.node()
    ada, bob, _ = await _people(node)
    async with node.stream(headers=ada) as by_ada, node.stream(headers=bob) as by_bob:
        await node.post(ada, body="end", note="mine alone")
        await cluster.relay.flush()
        [to_ada] = await by_ada.until_body("end")
        [to_bob] = await by_bob.until_body("end")
    assert to_ada["record"]["note"] == to_ada["changes"]["note"] == "mine alone"
    assert "note" not in to_bob["record"]
    assert "note" not in to_bob["changes"]
    assert to_bob["record"]["body"] == "end"


async def test_the_filter_parameter_keeps_the_matching_changes_only(cluster: Cluster) -> None:
    node = await cluster.node()
    ada, bob, _ = await _people(node)
    async with node.stream(headers=bob, filter='body ~ "cat" or body == "end"') as reader:
        for body in ("cats", "dogs", "a cat", "end"):
            await node.post(ada, body=body)
        await cluster.relay.flush()
        assert await _bodies(reader) == ["cats", "a cat", "end"]
    hidden = await node.client.get(
        "/v1/posts/changes", params={"filter": 'note == "x"'}, headers=bob
    )
    assert hidden.status_code == 400
    assert hidden.json()["detail"] == "you may not filter on: note"


REFUSED = [
    ("/v1/follows/changes", {}, {}, 404, "follows has no live changes"),
    ("/v1/posts/changes", {"filter": "body =="}, {}, 400, None),
    ("/v1/posts/changes", {"filter": "nope == 1"}, {}, 400, None),
    ("/v1/posts/changes", {"sort": "id"}, {}, 400, "unknown query parameter `sort`"),
    ("/v1/posts/changes", {"filter": ""}, {}, 400, "`filter` is empty"),
    ("/v1/posts/changes", {}, {"Last-Event-ID": "7"}, 400, None),
    ("/v1/posts/changes", {"last_event_id": "x" * 100}, {}, 400, None),
    ("/v1/posts/changes", {}, {"Accept": "application/json"}, 406, None),
    ("/v1/reports/changes", {}, {}, 401, "sign in to do this"),
]


async def test_a_request_that_cannot_stream_gets_a_problem(cluster: Cluster) -> None:
    node = await cluster.node()
    for path, params, headers, status, detail in REFUSED:
        response = await node.client.get(path, params=params, headers=headers)
        assert response.status_code == status, (path, params, headers, response.text)
        assert response.headers["content-type"] == "application/problem+json"
        if detail is not None:
            assert response.json()["detail"] == detail
        if status == 401:
            assert response.headers["www-authenticate"].startswith("Bearer")
    assert node.feed.open_streams == 0


async def test_a_resource_the_caller_may_not_list_is_refused_before_streaming(
    cluster: Cluster,
) -> None:
    node = await cluster.node()
    member = await node.sign_in("ada@example.com")
    admin = await node.sign_in("root@example.com", role="admin")
    refused = await node.client.get("/v1/reports/changes", headers=member)
    assert refused.status_code == 403
    async with node.stream("/v1/reports/changes", headers=admin) as reader:
        created = await node.client.post("/v1/reports", json={"reason": "spam"}, headers=member)
        assert created.status_code == 201
        await cluster.relay.flush()
        event = await reader.event()
    assert (event["event"], event["record"]["reason"]) == ("reports.created", "spam")


async def test_accept_may_name_event_streams_and_head_answers_the_headers(
    cluster: Cluster,
) -> None:
    node = await cluster.node()
    head = await node.client.head("/v1/posts/changes")
    assert head.status_code == 200
    assert head.headers["content-type"].startswith("text/event-stream")
    async with node.stream(headers={"Accept": "application/json;q=0.5, text/event-stream"}):
        pass
    ada = await node.sign_in("ada@example.com")
    post = await node.post(ada, body="still an item")
    item = await node.client.get(f"/v1/posts/{post['id']}")  # the fast path still serves ids
    assert item.status_code == 200


async def test_a_quiet_stream_sends_heartbeats(cluster: Cluster) -> None:
    node = await cluster.node()
    [route] = [r for r in node.app.routes if getattr(r, "path", "") == "/v1/posts/changes"]
    endpoint = route.endpoint  # type: ignore[attr-defined]
    assert isinstance(endpoint, ChangesEndpoint)
    assert endpoint.heartbeat == HEARTBEAT == 15.0
    endpoint.heartbeat = 0.2
    async with node.stream() as reader:
        assert await reader.next(wait=5) == {"comment": "ping"}
        assert await reader.next(wait=5) == {"comment": "ping"}


async def _people(node: Node) -> tuple[dict[str, str], dict[str, str], dict[str, str]]:
    return (
        await node.sign_in("ada@example.com"),
        await node.sign_in("bob@example.com"),
        await node.sign_in("carol@example.com"),
    )


async def _bodies(reader: Sse) -> list[str]:
    return [event["record"]["body"] for event in await reader.until_body("end")]


async def test_the_openapi_document_describes_the_streams_of_resources_with_events(
    cluster: Cluster,
) -> None:
    node = await cluster.node()
    document = (await node.client.get("/openapi.json")).json()
    operation = document["paths"]["/v1/posts/changes"]["get"]
    assert list(operation["responses"]["200"]["content"]) == ["text/event-stream"]
    assert {"400", "401", "403", "404", "406", "429", "503"} <= set(operation["responses"])
    assert "/v1/follows/changes" not in document["paths"]
