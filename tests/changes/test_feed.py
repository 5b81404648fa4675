"""The feed: one bus subscription per process, bounded streams, and how streams end."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.changes.support import DESIGN, WAIT, Cluster, serve, stop

from charpente.bus.memory import MemoryBus
from charpente.bus.subscription import QueueSubscription
from charpente.http.changes import ChangesEndpoint
from charpente.loader import load_design_text
from charpente.runtime.caller import Caller
from charpente.runtime.changes import ChangeFeed, StreamEnded
from charpente.runtime.events import Message
from charpente.runtime.ports import BusError, Subscription

pytestmark = pytest.mark.anyio

ADA = Caller("0190a000-0000-7000-8000-000000000001", "member")


class RecordingBus:
    """A MemoryBus that keeps the subscriptions it hands out, and can refuse new ones."""

    name = "recording"

    def __init__(self) -> None:
        self.inner = MemoryBus()
        self.subscriptions: list[QueueSubscription] = []
        self.refuse = False

    async def start(self) -> None:
        await self.inner.start()

    async def publish(self, messages: Sequence[Message]) -> None:
        await self.inner.publish(messages)

    async def subscribe(self) -> Subscription:
        if self.refuse:
            raise BusError("recording bus: refused")
        subscription = await self.inner.subscribe()
        assert isinstance(subscription, QueueSubscription)
        self.subscriptions.append(subscription)
        return subscription

    async def close(self) -> None:
        await self.inner.close()


async def test_a_subscriber_that_falls_behind_is_ended_and_frees_its_place(
    cluster: Cluster,
) -> None:
    node = await cluster.node(queue_size=3)
    ada = await node.sign_in("ada@example.com")
    slow = node.feed.open("posts", ADA)
    async with node.stream() as fast:
        for n in range(3):
            await node.post(ada, body=f"{n}")
            await cluster.relay.flush()
            await fast.event()  # this one keeps up
        assert slow.reason is None
        await node.post(ada, body="end")
        await cluster.relay.flush()
        assert [e["record"]["body"] for e in await fast.until_body("end")] == ["end"]
    assert slow.reason == "the stream fell 3 changes behind"
    with pytest.raises(StreamEnded):
        await slow.next(0.1)
    await _until(lambda: node.feed.open_streams == 0)


async def test_a_response_stuck_on_a_client_that_stopped_reading_ends_with_its_stream(
    sqlite_cluster: Cluster,
) -> None:
    node = await sqlite_cluster.node(queue_size=2)
    ada = await node.sign_in("ada@example.com")
    endpoint = ChangesEndpoint(node.feed, "posts")
    sent: list[dict[str, Any]] = []
    stuck = asyncio.Event()

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)
        if message.get("more_body") and len(sent) > 2:  # the client's buffer is full
            stuck.set()
            await asyncio.Event().wait()

    async def receive() -> dict[str, Any]:
        await asyncio.Event().wait()  # the client never leaves
        raise AssertionError

    scope = _scope()
    served = asyncio.create_task(endpoint(scope, receive, send))
    await _until(lambda: node.feed.open_streams == 1)
    for n in range(5):
        await node.post(ada, body=f"{n}")
        await sqlite_cluster.relay.flush()
    async with asyncio.timeout(WAIT):
        await stuck.wait()
        await served
    assert sent[0]["status"] == 200
    assert sent[1]["body"] == b"retry: 3000\n\n"
    assert node.feed.open_streams == 0


async def test_a_heartbeat_comes_on_time_while_changes_the_caller_may_not_see_keep_coming(
    sqlite_cluster: Cluster,
) -> None:
    node = await sqlite_cluster.node()
    ada = await node.sign_in("ada@example.com")
    stream = node.feed.open("posts", ADA)  # not the author: ada's private posts stay hidden
    written = 0

    async def write_privately() -> None:
        nonlocal written
        while True:
            await node.post(ada, body="x", visibility="private")
            await sqlite_cluster.relay.flush()
            written += 1
            await asyncio.sleep(0.05)

    writer = asyncio.create_task(write_privately())
    loop = asyncio.get_running_loop()
    try:
        await _until(lambda: written > 0)
        started = loop.time()
        async with asyncio.timeout(3):
            assert await stream.next(0.5) is None
        assert loop.time() - started < 1.5
        assert written > 2
    finally:
        writer.cancel()
        stream.close()


async def test_streams_are_bounded_per_caller_and_per_process(sqlite_cluster: Cluster) -> None:
    node = await sqlite_cluster.node(max_per_caller=2, max_streams=3)
    ada = await node.sign_in("ada@example.com")
    bob = await node.sign_in("bob@example.com")
    async with node.stream(headers=ada), node.stream(headers=ada):
        third = await node.client.get("/v1/posts/changes", headers=ada)
        assert third.status_code == 429
        assert third.headers["retry-after"] == "5"
        assert third.json()["detail"] == "at most 2 live streams at once per caller"
        async with node.stream(headers=bob):
            full = await node.client.get("/v1/posts/changes")
            assert full.status_code == 503
            assert full.headers["retry-after"] == "5"
    await _until(lambda: node.feed.open_streams == 0)
    async with node.stream(headers=ada):  # places are given back when streams end
        pass


async def test_a_message_that_does_not_decode_is_logged_and_skipped(
    sqlite_cluster: Cluster, caplog: pytest.LogCaptureFixture
) -> None:
    node = await sqlite_cluster.node()
    ada = await node.sign_in("ada@example.com")
    async with node.stream() as reader:
        with caplog.at_level(logging.WARNING, logger="charpente.changes"):
            garbage = Message("m-1", "posts.created", "x", b'{"not": "a cloudevent"}')
            await sqlite_cluster.bus.publish([garbage])
            await node.post(ada, body="end")
            await sqlite_cluster.relay.flush()
            assert [e["record"]["body"] for e in await reader.until_body("end")] == ["end"]
    assert "skipped message 'm-1'" in caplog.text
    assert "not a cloudevent" not in caplog.text  # what a message holds stays out of logs


async def test_when_the_bus_fails_streams_end_and_the_feed_subscribes_again(
    tmp_path: Path, anyio_backend: str
) -> None:
    bus = RecordingBus()
    cluster = Cluster(f"sqlite+aiosqlite:///{tmp_path / 'test.db'}", None, bus)  # type: ignore[arg-type]
    try:
        node = await cluster.node()
        ada = await node.sign_in("ada@example.com")
        async with node.stream() as reader:
            bus.refuse = True
            bus.subscriptions[-1].fail("the broker went away")
            await reader.ended()
        assert not node.feed.live
        refused = await node.client.get("/v1/posts/changes")
        assert refused.status_code == 503
        assert refused.headers["retry-after"] == "5"
        bus.refuse = False
        await _until(lambda: node.feed.live)
        async with node.stream() as reader:
            await node.post(ada, body="end")
            await cluster.relay.flush()
            assert [e["record"]["body"] for e in await reader.until_body("end")] == ["end"]
        assert len(bus.subscriptions) == 2
    finally:
        await cluster.close()


async def test_a_feed_started_while_the_bus_is_down_follows_it_once_it_is_up(
    anyio_backend: str,
) -> None:
    bus = RecordingBus()
    bus.refuse = True
    feed = ChangeFeed(load_design_text(DESIGN), None, bus)  # type: ignore[arg-type]
    await feed.start()
    try:
        assert not feed.live
        bus.refuse = False
        await _until(lambda: feed.live)
        assert len(bus.subscriptions) == 1
    finally:
        await feed.stop()
    assert bus.subscriptions[0].closed


async def test_stopping_the_feed_ends_every_stream(sqlite_cluster: Cluster) -> None:
    node = await sqlite_cluster.node()
    async with node.stream() as one, node.stream() as two:
        await node.feed.stop()
        await one.ended()
        await two.ended()
    assert node.feed.open_streams == 0
    assert not node.feed.live


async def test_a_client_that_leaves_frees_its_place(sqlite_cluster: Cluster) -> None:
    node = await sqlite_cluster.node()
    async with node.stream():
        assert node.feed.open_streams == 1
    await _until(lambda: node.feed.open_streams == 0)


async def test_a_stream_ends_at_its_maximum_age(sqlite_cluster: Cluster) -> None:
    node = await sqlite_cluster.node(max_age=0.3)
    async with node.stream() as reader:
        async with asyncio.timeout(2):
            await reader.ended()
    await _until(lambda: node.feed.open_streams == 0)


async def test_a_server_shutting_down_ends_its_open_streams(sqlite_cluster: Cluster) -> None:
    node = await sqlite_cluster.node()
    other_server, other_task, url = await serve(node.app, graceful=0.5)
    async with (
        httpx.AsyncClient(base_url=url, timeout=WAIT) as client,
        client.stream("GET", "/v1/posts/changes") as response,
    ):
        assert response.status_code == 200
        await _until(lambda: node.feed.open_streams == 1)
        async with asyncio.timeout(5):
            await stop(other_server, other_task)  # graceful time over: streams cancelled
    assert node.feed.open_streams == 0
    assert other_task.done()


def test_the_feed_refuses_limits_it_cannot_keep() -> None:
    design = load_design_text(DESIGN)
    with pytest.raises(ValueError, match="queue_size"):
        ChangeFeed(design, None, MemoryBus(), queue_size=0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="max_age"):
        ChangeFeed(design, None, MemoryBus(), max_age=0)  # type: ignore[arg-type]


def _scope() -> dict[str, Any]:
    return {
        "type": "http",
        "method": "GET",
        "path": "/v1/posts/changes",
        "query_string": b"",
        "headers": [],
        "client": ("127.0.0.1", 1234),
    }


async def _until(condition: Any, wait: float = 5.0) -> None:
    async with asyncio.timeout(wait):
        while not condition():
            await asyncio.sleep(0.02)
