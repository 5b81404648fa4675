"""The brokers the bus contract runs on, each with names of its own and a reader of its own.

A `Broker` builds buses for one test (a fresh exchange, stream or prefix, deleted at the
end) and opens a `Reader`: a consumer that uses the broker's own client, not the bus, so
a test checks what really reached the broker. Servers come from CHARPENTE_TEST_RABBITMQ_URL,
CHARPENTE_TEST_NATS_URL and CHARPENTE_TEST_REDIS_URL (default: the local servers).
"""

from __future__ import annotations

import asyncio
import os
import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import aio_pika
import nats
import nats.errors
import nats.js.errors
from nats.js import api
from redis.asyncio import Redis
from redis.exceptions import RedisError
from tests.conftest import service_missing

from charpente.bus.memory import MemoryBus
from charpente.bus.nats import NatsBus
from charpente.bus.rabbitmq import RabbitBus
from charpente.bus.redis_streams import RedisStreamBus
from charpente.runtime.events import Message
from charpente.runtime.ports import Bus, Subscription

RABBITMQ_URL = os.environ.get("CHARPENTE_TEST_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672/")
NATS_URL = os.environ.get("CHARPENTE_TEST_NATS_URL", "nats://127.0.0.1:4222")
REDIS_URL = os.environ.get("CHARPENTE_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
WAIT = 10.0  # seconds a reader waits for what a test expects


def with_address(url: str, address: str) -> str:
    """`url` pointing at `address` (host:port), its credentials and path kept."""
    parts = urlsplit(url)
    userinfo = parts.netloc.rpartition("@")[0]
    netloc = f"{userinfo}@{address}" if userinfo else address
    return urlunsplit(parts._replace(netloc=netloc))


class Reader:
    """Reads what reached the broker, independently of the bus under test."""

    async def take(self, count: int) -> list[Message]:
        """The next `count` messages, waiting up to WAIT seconds for them."""
        raise NotImplementedError

    async def close(self) -> None:
        """Release the reader's connection."""


@dataclass
class Broker:
    """One broker for one test: its server's URL and this test's names on it."""

    kind: str
    url: str
    token: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    buses: list[Bus] = field(default_factory=list)
    readers: list[Reader] = field(default_factory=list)

    @property
    def address(self) -> tuple[str, int]:
        parts = urlsplit(self.url)
        return parts.hostname or "127.0.0.1", parts.port or 0

    def bus(self, url: str | None = None, **options: Any) -> Bus:
        """A bus on this test's names (through `url` if given, say a proxy's)."""
        built = self._build(url or self.url, **options)
        self.buses.append(built)
        return built

    def _build(self, url: str, **options: Any) -> Bus:
        raise NotImplementedError

    async def reader(self) -> Reader:
        """A reader of everything published from now on (after a bus started)."""
        raise NotImplementedError

    async def cleanup(self) -> None:
        for reader in self.readers:
            await reader.close()
        for bus in self.buses:
            await bus.close()
        await self._delete_names()

    async def _delete_names(self) -> None:
        """Delete what this test created on the server."""


# --- in-process ------------------------------------------------------------------------


class _SubscriptionReader(Reader):
    def __init__(self, subscription: Subscription) -> None:
        self._subscription = subscription
        self._messages = aiter(subscription)

    async def take(self, count: int) -> list[Message]:
        async with asyncio.timeout(WAIT):
            return [await anext(self._messages) for _ in range(count)]

    async def close(self) -> None:
        await self._subscription.close()


@dataclass
class MemoryBroker(Broker):
    def _build(self, url: str, **options: Any) -> Bus:
        options.pop("timeout", None)
        return MemoryBus(**options)

    async def reader(self) -> Reader:
        (bus,) = self.buses  # the in-process bus has no other way in
        reader = _SubscriptionReader(await bus.subscribe())
        self.readers.append(reader)
        return reader


# --- RabbitMQ ----------------------------------------------------------------------------


class _QueueReader(Reader):
    """Consumes a durable queue into a local buffer, so a test's timeout cancels no RPC."""

    def __init__(self, connection: aio_pika.abc.AbstractConnection, queue_name: str) -> None:
        self._connection = connection
        self._queue_name = queue_name
        self._buffer: asyncio.Queue[Message] = asyncio.Queue()

    async def deliver(self, incoming: aio_pika.abc.AbstractIncomingMessage) -> None:
        self._buffer.put_nowait(
            Message(
                id=incoming.message_id or "",
                key=incoming.routing_key or "",
                subject=str(incoming.headers["ce-subject"]),
                body=incoming.body,
                content_type=incoming.content_type or "",
            )
        )

    async def take(self, count: int) -> list[Message]:
        async with asyncio.timeout(WAIT):
            return [await self._buffer.get() for _ in range(count)]

    async def close(self) -> None:
        channel = await self._connection.channel()
        await channel.queue_delete(self._queue_name)
        await self._connection.close()


@dataclass
class RabbitBroker(Broker):
    @property
    def exchange(self) -> str:
        return f"charpente.test.{self.token}"

    def _build(self, url: str, **options: Any) -> Bus:
        return RabbitBus(url, exchange=self.exchange, **options)

    async def reader(self) -> Reader:
        """A durable queue bound to everything, as a real consumer would declare it."""
        connection = await aio_pika.connect(self.url, timeout=5)
        channel = await connection.channel()
        exchange = await channel.declare_exchange(
            self.exchange, aio_pika.ExchangeType.TOPIC, durable=True
        )
        name = f"{self.exchange}.reader.{len(self.readers)}"
        queue = await channel.declare_queue(name, durable=True)
        await queue.bind(exchange, "#")
        reader = _QueueReader(connection, name)
        await queue.consume(reader.deliver, no_ack=True)
        self.readers.append(reader)
        return reader

    async def _delete_names(self) -> None:
        connection = await aio_pika.connect(self.url, timeout=5)
        try:
            channel = await connection.channel()
            await channel.exchange_delete(self.exchange)
        finally:
            await connection.close()


# --- NATS --------------------------------------------------------------------------------


class _ConsumerReader(Reader):
    def __init__(self, client: nats.NATS, sub: Any, prefix: str) -> None:
        self._client = client
        self._sub = sub
        self._prefix = prefix

    async def take(self, count: int) -> list[Message]:
        taken: list[Message] = []
        async with asyncio.timeout(WAIT):
            while len(taken) < count:
                msg = await self._sub.next_msg(timeout=WAIT)
                await msg.ack()  # unacknowledged, JetStream stops at max_ack_pending
                headers = msg.headers or {}
                taken.append(
                    Message(
                        id=headers["Nats-Msg-Id"],
                        key=msg.subject.removeprefix(f"{self._prefix}."),
                        subject=headers["Ce-Subject"],
                        body=msg.data,
                        content_type=headers["Content-Type"],
                    )
                )
        return taken

    async def close(self) -> None:
        await self._sub.unsubscribe()
        await self._client.close()


@dataclass
class NatsBroker(Broker):
    @property
    def prefix(self) -> str:
        return f"charpente_test_{self.token}"

    @property
    def stream(self) -> str:
        return self.prefix.upper()

    def _build(self, url: str, **options: Any) -> Bus:
        return NatsBus(url, prefix=self.prefix, **options)

    async def reader(self) -> Reader:
        """A JetStream consumer of the whole stream (the bus made it when it started)."""
        client = await nats.connect(self.url, connect_timeout=5)
        sub = await client.jetstream().subscribe(
            f"{self.prefix}.>", stream=self.stream, deliver_policy=api.DeliverPolicy.ALL
        )
        reader = _ConsumerReader(client, sub, self.prefix)
        self.readers.append(reader)
        return reader

    async def stored(self) -> int:
        """How many messages the stream holds."""
        client = await nats.connect(self.url, connect_timeout=5)
        try:
            info = await client.jetstream().stream_info(self.stream)
            return info.state.messages
        finally:
            await client.close()

    async def _delete_names(self) -> None:
        client = await nats.connect(self.url, connect_timeout=5)
        try:
            await client.jetstream().delete_stream(self.stream)
        except nats.js.errors.NotFoundError:
            pass
        finally:
            await client.close()


# --- Redis -------------------------------------------------------------------------------


class _RangeReader(Reader):
    def __init__(self, client: Redis, stream: str, start: str) -> None:
        self._client = client
        self._stream = stream
        self._after = start

    async def take(self, count: int) -> list[Message]:
        taken: list[Message] = []
        async with asyncio.timeout(WAIT):
            while len(taken) < count:
                entries = await self._client.xrange(self._stream, f"({self._after}", "+")
                for entry_id, fields in entries[: count - len(taken)]:
                    self._after = entry_id.decode()
                    taken.append(
                        Message(
                            id=fields[b"id"].decode(),
                            key=fields[b"key"].decode(),
                            subject=fields[b"subject"].decode(),
                            body=fields[b"body"],
                            content_type=fields[b"content_type"].decode(),
                        )
                    )
                if len(taken) < count:
                    await asyncio.sleep(0.02)
        return taken

    async def close(self) -> None:
        await self._client.aclose()


@dataclass
class RedisBroker(Broker):
    @property
    def stream(self) -> str:
        return f"charpente:test:{self.token}:events"

    def _build(self, url: str, **options: Any) -> Bus:
        return RedisStreamBus(url, stream=self.stream, **options)

    async def reader(self) -> Reader:
        """XRANGE over the entries added from now on."""
        client = Redis.from_url(self.url)
        last = await client.xrevrange(self.stream, "+", "-", count=1)
        reader = _RangeReader(client, self.stream, last[0][0].decode() if last else "0-0")
        self.readers.append(reader)
        return reader

    async def length(self) -> int:
        client = Redis.from_url(self.url)
        try:
            return int(await client.xlen(self.stream))
        finally:
            await client.aclose()

    async def _delete_names(self) -> None:
        client = Redis.from_url(self.url)
        try:
            await client.delete(self.stream)
        finally:
            await client.aclose()


# --- reachability ------------------------------------------------------------------------


async def reachable(kind: str) -> Broker:
    """The broker of this kind for one test; skips (or fails in CI) when it is not there."""
    try:
        async with asyncio.timeout(5):
            return await _probe(kind)
    except (OSError, RedisError, nats.errors.Error, aio_pika.exceptions.AMQPError) as exc:
        service_missing(kind, f"{type(exc).__name__}: {exc}")
        raise AssertionError("unreachable") from exc  # service_missing skipped or failed


async def _probe(kind: str) -> Broker:
    if kind == "memory":
        return MemoryBroker(kind, "memory://")
    if kind == "rabbitmq":
        connection = await aio_pika.connect(RABBITMQ_URL, timeout=3)
        await connection.close()
        return RabbitBroker(kind, RABBITMQ_URL)
    if kind == "nats":
        client = await nats.connect(NATS_URL, connect_timeout=3, max_reconnect_attempts=0)
        await client.jetstream().account_info()
        await client.close()
        return NatsBroker(kind, NATS_URL)
    client = Redis.from_url(REDIS_URL, socket_connect_timeout=3, socket_timeout=3)
    try:
        await client.ping()
    finally:
        await client.aclose()
    return RedisBroker(kind, REDIS_URL)
