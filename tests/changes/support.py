"""Live changes under test: real servers (uvicorn on a free port) over one database and a
bus, a relay's stand-in that publishes what the writes recorded, and an SSE reader.

httpx's ASGI transport collects a whole response before returning it, so streams are read
from a real uvicorn server running in the test's event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import uvicorn
from sqlalchemy.ext.asyncio import AsyncEngine

from charpente.design.model import Design
from charpente.http.app import build_app
from charpente.loader import load_design_text
from charpente.runtime.auth import Accounts
from charpente.runtime.changes import ChangeFeed
from charpente.runtime.events import Event, to_cloudevent
from charpente.runtime.passwords import PasswordHasher
from charpente.runtime.ports import Bus
from charpente.runtime.service import Service
from charpente.sql.authstore import SqlAuthStore
from charpente.sql.database import SqlDatabase
from charpente.sql.engine import create_engine
from charpente.sql.schema import build_metadata
from charpente.templates import template_text

PASSWORD = "correct horse battery staple"
FAST_HASHER = PasswordHasher(time_cost=1, memory_kib=1024)
WAIT = 10.0  # seconds a reader waits for what a test expects
FIRST_ID = "00000000-0000-0000-0000-000000000000"


def social_with_events() -> str:
    """The social template with events on posts (whether or not it has them already), a
    `note` only a post's author reads, and `reports`, which only admins read."""
    text = template_text("social")
    text = text.replace(
        "      share_count: {count: shares.post}\n",
        "      share_count: {count: shares.post}\n      note: {type: string, max_length: 100}\n",
    )
    delete_rule = '      delete: author == auth.id or auth.role in ["moderator", "admin"]\n'
    posts_rule = "        and exists(follows, follower == auth.id and followee == author))\n"
    start = text.index(posts_rule)
    end = text.index(delete_rule, start) + len(delete_rule)
    text = text[:end] + "      fields:\n        note: {read: author == auth.id}\n" + text[end:]
    posts = text[start : text.index("\n  follows:")]
    if "    events: [created, updated, deleted]\n" not in posts:
        text = text.replace(
            "\n\n  follows:", "\n    events: [created, updated, deleted]\n\n  follows:", 1
        )
    text += (
        "\n  reports:\n"
        "    fields:\n"
        "      reason: {type: string, required: true, max_length: 100}\n"
        '    access: {read: auth.role == "admin", create: auth != null}\n'
        "    events: true\n"
    )
    return text


DESIGN = social_with_events()


class Publisher:
    """What the relay does, by hand: the events recorded since the last call, to the bus."""

    def __init__(self, database: SqlDatabase, bus: Bus, resources: tuple[str, ...]) -> None:
        self.database, self.bus, self.resources = database, bus, resources
        self.cursors = dict.fromkeys(resources, FIRST_ID)

    async def recorded(self, resource: str = "posts") -> list[Event]:
        """The events recorded since the last call (nothing published)."""
        events = await self.database.events_after(resource, self.cursors[resource], 1000)
        if events:
            self.cursors[resource] = events[-1].id
        return events

    async def flush(self) -> list[Event]:
        """Publish every event recorded since the last call; those events."""
        published = []
        for resource in self.resources:
            published.extend(await self.recorded(resource))
        await self.publish(published)
        return published

    async def publish(self, events: list[Event]) -> None:
        if events:
            await self.bus.publish([to_cloudevent(e, "urn:charpente:social") for e in events])


@dataclass
class Node:
    """One server process: its app served on a real port, its feed, its client."""

    url: str
    app: Any
    feed: ChangeFeed
    service: Service
    accounts: Accounts
    database: SqlDatabase
    design: Design
    client: httpx.AsyncClient
    server: uvicorn.Server
    task: asyncio.Task[None]
    ids: dict[str, str] = field(default_factory=dict)

    async def sign_in(self, email: str, role: str = "member") -> dict[str, str]:
        """A new account, signed in: its Authorization header (its id in `ids`)."""
        record = await self.accounts.create_account(email, role, PASSWORD, {})
        pair = await self.accounts.token(
            {"grant_type": "password", "username": email, "password": PASSWORD}
        )
        self.ids[email] = str(record["id"])
        return {"Authorization": f"Bearer {pair.access_token}"}

    async def post(self, headers: dict[str, str], **body: Any) -> dict[str, Any]:
        response = await self.client.post("/v1/posts", json=body, headers=headers)
        assert response.status_code == 201, response.text
        record: dict[str, Any] = response.json()
        return record

    @contextlib.asynccontextmanager
    async def stream(
        self, path: str = "/v1/posts/changes", headers: dict[str, str] | None = None, **params: str
    ) -> AsyncIterator[Sse]:
        """An open stream (answered 200, `retry:` read), closed at the end of the block."""
        async with self.client.stream("GET", path, headers=headers, params=params) as response:
            assert response.status_code == 200, (await response.aread()).decode()
            reader = Sse(response)
            assert await reader.next() == {"retry": "3000"}
            yield reader


class Sse:
    """Reads Server-Sent Events frames: each a dict of its fields (a comment as `comment`)."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self._lines = response.aiter_lines()

    async def next(self, wait: float = WAIT) -> dict[str, str]:
        """The next frame; EOFError when the stream ends, TimeoutError after `wait` s."""
        frame: dict[str, str] = {}
        async with asyncio.timeout(wait):
            async for line in self._lines:
                if not line:
                    if frame:
                        return frame
                    continue
                if line.startswith(":"):
                    frame["comment"] = line[1:].strip()
                    continue
                name, _, value = line.partition(":")
                frame[name] = value.removeprefix(" ")
        raise EOFError("the stream ended")

    async def event(self, wait: float = WAIT) -> dict[str, Any]:
        """The next event (heartbeats skipped): its data decoded, with its `event_id` and its
        `event` type beside it (`id` is the record's)."""
        while True:
            frame = await self.next(wait)
            if "comment" not in frame:
                data: dict[str, Any] = json.loads(frame["data"])
                return {**data, "event_id": frame.get("id"), "event": frame["event"]}

    async def until_body(self, body: str, wait: float = WAIT) -> list[dict[str, Any]]:
        """Every event up to and including the one whose record's body is `body`."""
        seen = []
        while True:
            event = await self.event(wait)
            seen.append(event)
            if event.get("record", {}).get("body") == body:
                return seen

    async def ended(self, wait: float = WAIT) -> None:
        """Wait until the server ends the stream (heartbeats are fine, and the last
        `event: end`; changes are not)."""
        with contextlib.suppress(EOFError):
            while True:
                frame = await self.next(wait)
                if frame.get("event") == "end":
                    assert json.loads(frame["data"])["reason"], frame
                    continue
                assert "comment" in frame, f"an event came instead of the end: {frame}"


class Cluster:
    """Nodes over one database and one bus (each node its own feed and server)."""

    def __init__(self, url: str, schema: str | None, bus: Bus) -> None:
        self.url, self.schema, self.bus = url, schema, bus
        self.nodes: list[Node] = []
        self.engines: list[AsyncEngine] = []
        self.publisher: Publisher | None = None

    async def node(self, **feed_options: Any) -> Node:
        design = load_design_text(DESIGN)
        engine = create_engine(self.url, schema=self.schema)
        if not self.engines:
            async with engine.begin() as conn:
                await conn.run_sync(build_metadata(design).create_all)
        self.engines.append(engine)
        database = SqlDatabase(engine, design)
        service = Service(design, database)
        accounts = Accounts(
            design, service, SqlAuthStore(database), clock=service.clock, hasher=FAST_HASHER
        )
        feed = ChangeFeed(design, database, self.bus, **feed_options)
        app = build_app(
            service,
            design,
            accounts=accounts,
            changes=feed,
            on_startup=[accounts.start, feed.start],
            on_shutdown=[feed.stop, accounts.stop],
        )
        server, task, url = await serve(app)
        client = httpx.AsyncClient(base_url=url, timeout=WAIT)
        node = Node(url, app, feed, service, accounts, database, design, client, server, task)
        self.nodes.append(node)
        if self.publisher is None:
            self.publisher = Publisher(database, self.bus, ("posts", "reports"))
        return node

    @property
    def relay(self) -> Publisher:
        assert self.publisher is not None, "make a node first"
        return self.publisher

    async def close(self) -> None:
        for node in self.nodes:
            await node.client.aclose()
            await stop(node.server, node.task)
            await node.database.close()
        await self.bus.close()


class _Server(uvicorn.Server):
    """uvicorn without its signal handlers (the test runner keeps its own)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


async def serve(app: Any, graceful: float = 2.0) -> tuple[uvicorn.Server, asyncio.Task[None], str]:
    """`app` served on a free local port in this event loop: the server, its task, its URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        app, log_level="warning", lifespan="on", timeout_graceful_shutdown=graceful
    )
    server = _Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    async with asyncio.timeout(WAIT):
        while not server.started:
            if task.done():
                task.result()
                raise RuntimeError("the server stopped while starting")
            await asyncio.sleep(0.01)
    return server, task, f"http://127.0.0.1:{port}"


async def stop(server: uvicorn.Server, task: asyncio.Task[None]) -> None:
    server.should_exit = True
    async with asyncio.timeout(WAIT + 5):
        await task
