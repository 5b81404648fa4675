"""Two server processes on one database and one bus: a write served by one reaches the
streams open on the other."""

from __future__ import annotations

import pytest
from tests.changes.support import Cluster

pytestmark = pytest.mark.anyio


async def _a_write_on_one_node_reaches_streams_on_the_other(cluster: Cluster) -> None:
    a = await cluster.node()
    b = await cluster.node()  # started after a: it loads the signing key a made
    ada = await a.sign_in("ada@example.com")
    bob = await a.sign_in("bob@example.com")
    follow = await a.client.post(
        "/v1/follows", json={"followee": a.ids["ada@example.com"]}, headers=bob
    )
    assert follow.status_code == 201
    async with b.stream() as anyone, b.stream(headers=bob) as follower, a.stream() as local:
        assert (a.feed.open_streams, b.feed.open_streams) == (1, 2)
        await a.post(ada, body="f", visibility="followers")
        post = await a.post(ada, body="end")
        await cluster.relay.flush()
        assert [e["record"]["body"] for e in await anyone.until_body("end")] == ["end"]
        assert [e["record"]["body"] for e in await follower.until_body("end")] == ["f", "end"]
        assert [e["record"]["body"] for e in await local.until_body("end")] == ["end"]
        patched = await b.client.patch(
            f"/v1/posts/{post['id']}", json={"body": "edited"}, headers=ada
        )
        assert patched.status_code == 200
        await a.post(ada, body="end")
        await cluster.relay.flush()
        edited = await anyone.until_body("end")
    assert [(e["event"], e["record"]["body"]) for e in edited] == [
        ("posts.updated", "edited"),
        ("posts.created", "end"),
    ]


async def test_over_a_redis_stream_on_postgresql(redis_cluster: Cluster) -> None:
    await _a_write_on_one_node_reaches_streams_on_the_other(redis_cluster)


async def test_over_the_memory_bus(cluster: Cluster) -> None:
    await _a_write_on_one_node_reaches_streams_on_the_other(cluster)
