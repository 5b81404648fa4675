"""Webhook test helpers: a real receiver (uvicorn on 127.0.0.1, in a thread of its own) whose
answers a test scripts, and the Webhooks service over a fresh database.

The receiver records every request it gets (when, headers, body) before answering; a
script maps (message id, attempt number) to an answer: a status, or "hang" (answer only
after `hang` seconds, past the sender's timeout).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import socket
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import uvicorn

from charpente.design.model import Design
from charpente.loader import load_design_text
from charpente.outbound.sender import HttpOutbound
from charpente.runtime.events import Event, Message, to_cloudevent
from charpente.runtime.ids import new_id
from charpente.runtime.signatures import new_secret
from charpente.runtime.webhooks import DeliveryOptions, RetrySchedule, Webhooks
from charpente.sql.database import SqlDatabase
from charpente.sql.engine import create_engine
from charpente.sql.schema import build_metadata
from charpente.sql.webhookstore import SqlWebhookStore

DESIGN_TEXT = """
charpente: 1
name: hooks
resources:
  posts:
    access: {read: true, create: true}
    fields:
      body: text
    events: [created, updated, deleted]
  likes:
    access: {read: true, create: true}
    fields:
      post: {ref: posts, required: true}
    events: [created]
webhooks:
  moderation: {url: env:HOOK_URL, events: [posts.created], secret: env:HOOK_SECRET}
outbound:
  allow: [127.0.0.1/32]
"""

FAST = RetrySchedule(delays=(0.0, 0.2, 0.3, 0.3, 0.3, 0.3), jitter=0.2)


@dataclass
class Received:
    """One request the receiver got."""

    at: float  # time.monotonic() when it arrived
    headers: dict[str, str]
    body: bytes
    answer: str  # the status it answered, or "hang"

    @property
    def message_id(self) -> str:
        return self.headers.get("webhook-id", "")


Script = Callable[[str, int], str]  # (message id, attempt number from 1) -> "200" | "hang"…


@dataclass
class Receiver:
    """A webhook receiver on a real socket; `url` is where it listens."""

    script: Script = lambda message, attempt: "200"
    hang: float = 1.0
    delay: float = 0.0  # seconds before every answer
    received: list[Received] = field(default_factory=list)
    port: int = 0
    _server: uvicorn.Server | None = None
    _thread: threading.Thread | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def of(self, message_id: str) -> list[Received]:
        with self._lock:
            return [r for r in self.received if r.message_id == message_id]

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            event = await receive()
            body += event.get("body", b"")
            if not event.get("more_body"):
                break
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        with self._lock:
            message = headers.get("webhook-id", "")
            attempt = 1 + sum(1 for r in self.received if r.message_id == message)
            answer = self.script(message, attempt)
            self.received.append(Received(time.monotonic(), headers, body, answer))
        if self.delay:
            await asyncio.sleep(self.delay)
        if answer == "hang":
            await asyncio.sleep(self.hang)
            answer = "200"
        status = int(answer)
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": f"answer {status}".encode()})

    def start(self) -> Receiver:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", self.port))
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(self, log_level="warning", lifespan="off", access_log=False)
        server = uvicorn.Server(config)
        self._server = server
        self._thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 5
        while not server.started:
            assert time.monotonic() < deadline, "the receiver did not start"
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(5)
            self._server, self._thread = None, None


@dataclass
class Setup:
    """A design, its database, and Webhooks services over it."""

    design: Design
    database: SqlDatabase
    environment: dict[str, str]
    made: list[Webhooks] = field(default_factory=list)

    def webhooks(self, **options: Any) -> Webhooks:
        """A Webhooks service (a worker) with its own outbound sender; options of
        DeliveryOptions, plus `timeout` (the sender's total) and `allow`."""
        timeout = options.pop("timeout", 1.0)
        allow = options.pop("allow", self.design.outbound_allow)
        options.setdefault("schedule", FAST)
        options.setdefault("idle", 0.02)
        outbound = HttpOutbound(allow, connect_timeout=timeout, total_timeout=timeout)
        found = Webhooks(
            self.design,
            SqlWebhookStore(self.database),
            outbound,
            environment=self.environment.get,
            options=DeliveryOptions(**options),
        )
        self.made.append(found)
        return found

    async def fan_out(self, webhooks: Webhooks, messages: list[Message]) -> int:
        async with self.database.transaction() as tx:
            return await webhooks.fan_out(tx, messages)


MakeSetup = Callable[..., Awaitable[Setup]]


@contextlib.asynccontextmanager
async def setups(target: Any) -> AsyncIterator[MakeSetup]:
    made: list[Setup] = []

    async def make(url: str, secret: str | None = None, design_text: str = DESIGN_TEXT) -> Setup:
        design = load_design_text(design_text)
        engine = create_engine(target.url, schema=target.schema, pool_size=8)
        async with engine.begin() as conn:
            await conn.run_sync(build_metadata(design).create_all)
        environment = {"HOOK_URL": url, "HOOK_SECRET": secret or new_secret()}
        setup = Setup(design, SqlDatabase(engine, design), environment)
        made.append(setup)
        return setup

    try:
        yield make
    finally:
        for setup in made:
            for webhooks in setup.made:
                await webhooks.outbound.close()
            await setup.database.close()


def message(resource: str = "posts", action: str = "created", **record: Any) -> Message:
    """A CloudEvent message as the relay hands it over."""
    record_id = new_id()
    event = Event(
        id=new_id(),
        resource=resource,
        record_id=record_id,
        action=action,
        at=datetime.datetime.now(datetime.UTC),
        version=1,
        changes=record,
        record={"id": record_id, **record},
    )
    return to_cloudevent(event, "charpente/hooks")


async def run_until(webhooks: Webhooks, done: Callable[[], Awaitable[bool]], limit: float) -> None:
    """Run the delivery loop until `done()` says so (checked every 50 ms), at most `limit` s."""
    stop = asyncio.Event()
    task = asyncio.create_task(webhooks.run(stop))
    try:
        deadline = time.monotonic() + limit
        while not await done():
            assert time.monotonic() < deadline, "deliveries did not settle in time"
            await asyncio.sleep(0.05)
    finally:
        stop.set()
        await asyncio.wait_for(task, 5)
