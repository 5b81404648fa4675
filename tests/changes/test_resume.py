"""Resuming with Last-Event-ID: the history first, then live, without a gap or a duplicate."""

from __future__ import annotations

import pytest
from tests.changes.support import Cluster

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize("how", ["header", "query"])
async def test_a_resumed_stream_replays_what_it_missed_then_goes_live_without_duplicates(
    cluster: Cluster, how: str
) -> None:
    node = await cluster.node()
    ada = await node.sign_in("ada@example.com")
    async with node.stream() as first:
        await node.post(ada, body="a")
        await node.post(ada, body="end")
        await cluster.relay.flush()
        seen = await first.until_body("end")
    last = seen[-1]["event_id"]
    await node.post(ada, body="b")
    await cluster.relay.flush()  # published while nobody listened: only the history has it
    await node.post(ada, body="c")  # recorded, not yet published (the relay lags)
    resume = {"headers": {"Last-Event-ID": last}} if how == "header" else {"last_event_id": last}
    async with node.stream(**resume) as second:  # type: ignore[arg-type]
        await node.post(ada, body="d")
        await node.post(ada, body="end")
        published = await cluster.relay.flush()  # c, d and end now, live
        await cluster.relay.publish(published)  # and once more: a bus may deliver twice
        resumed = await second.until_body("end")
        await node.post(ada, body="live")
        await node.post(ada, body="end")
        await cluster.relay.flush()
        resumed += await second.until_body("end")
    assert [e["record"]["body"] for e in resumed] == ["b", "c", "d", "end", "live", "end"]
    assert len({e["event_id"] for e in resumed}) == 6
    assert all(e["event_id"] > last for e in resumed)


async def test_a_replay_shows_only_what_the_caller_may_read(cluster: Cluster) -> None:
    node = await cluster.node()
    ada = await node.sign_in("ada@example.com")
    carol = await node.sign_in("carol@example.com")
    await node.post(ada, body="start")
    [start] = await cluster.relay.recorded()
    for body, visibility in (("p", "public"), ("x", "private"), ("end", "public")):
        await node.post(ada, body=body, visibility=visibility, note="ada's")
    async with node.stream(headers={**carol, "Last-Event-ID": start.id}) as reader:
        replayed = await reader.until_body("end")
    assert [e["record"]["body"] for e in replayed] == ["p", "end"]
    assert all("note" not in e["record"] for e in replayed)


async def test_a_replay_past_its_limit_sends_a_reset_then_follows_live(cluster: Cluster) -> None:
    node = await cluster.node(replay_limit=3)
    ada = await node.sign_in("ada@example.com")
    await node.post(ada, body="start")
    [start] = await cluster.relay.recorded()
    for n in range(5):
        await node.post(ada, body=f"old {n}")
    async with node.stream(headers={"Last-Event-ID": start.id}) as reader:
        replayed = [await reader.event() for _ in range(3)]
        reset = await reader.next()
        await node.post(ada, body="end")
        await cluster.relay.flush()  # the five old ones come live too: the reset skipped them
        live = await reader.until_body("end")
    assert [e["record"]["body"] for e in replayed] == ["old 0", "old 1", "old 2"]
    assert reset["event"] == "reset"
    assert "reload" in reset["data"]
    assert reset["id"] > replayed[-1]["event_id"]
    assert [e["record"]["body"] for e in live] == ["end"]
    async with node.stream(headers={"Last-Event-ID": reset["id"]}) as again:
        assert [e["record"]["body"] for e in await again.until_body("end")] == ["end"]


async def test_a_replay_within_its_limit_sends_no_reset(cluster: Cluster) -> None:
    node = await cluster.node(replay_limit=3)
    ada = await node.sign_in("ada@example.com")
    await node.post(ada, body="start")
    [start] = await cluster.relay.recorded()
    for body in ("one", "two", "end"):
        await node.post(ada, body=body)
    async with node.stream(headers={"Last-Event-ID": start.id}) as reader:
        assert [e["record"]["body"] for e in await reader.until_body("end")] == [
            "one",
            "two",
            "end",
        ]
        await node.post(ada, body="end")
        await cluster.relay.flush()
        assert [e["event"] for e in await reader.until_body("end")] == ["posts.created"]
