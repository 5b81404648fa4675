"""The consumers that docs/brokers.md shows run as printed against the real brokers, and
receive what a bus publishes (under names of this test's own, so nothing else is touched)."""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aio_pika
import msgspec
import nats
import pytest
from redis.asyncio import Redis
from tests.bus.brokers import NATS_URL, RABBITMQ_URL, REDIS_URL, reachable

from charpente.bus.nats import NatsBus
from charpente.bus.rabbitmq import RabbitBus
from charpente.bus.redis_streams import RedisStreamBus
from charpente.runtime.events import Message
from charpente.runtime.ports import Bus

pytestmark = pytest.mark.anyio

PAGE = Path(__file__).resolve().parents[2] / "docs" / "brokers.md"
HEADINGS = {"rabbitmq": "### RabbitMQ", "nats": "### NATS", "redis": "### Redis"}


class StopConsumerError(Exception):
    """Raised by the test's `handle` once it saw what it waited for: ends the consumer."""


def consumer_code(kind: str) -> str:
    """The page's Python consumer under the heading for `kind`."""
    text = PAGE.read_text(encoding="utf-8")
    section = text[text.index(HEADINGS[kind]) :]
    match = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert match is not None, f"no Python example under {HEADINGS[kind]}"
    return match.group(1)


def renamed(code: str, kind: str, token: str) -> tuple[str, Bus, Callable[[], Awaitable[None]]]:
    """The example with this test's names and servers, a bus that publishes to them, and
    what deletes them afterwards."""
    code = code.replace("asyncio.run(main())", "")
    if kind == "rabbitmq":
        exchange = f"charpente.docs.{token}"
        code = code.replace('"charpente"', repr(exchange))
        code = code.replace('"moderation"', repr(f"{exchange}.moderation"))
        code = code.replace("amqp://guest:guest@127.0.0.1:5672/", RABBITMQ_URL)

        async def delete_rabbitmq() -> None:
            connection = await aio_pika.connect(RABBITMQ_URL)
            channel = await connection.channel()
            await channel.queue_delete(f"{exchange}.moderation")
            await channel.exchange_delete(exchange)
            await connection.close()

        return code, RabbitBus(RABBITMQ_URL, exchange=exchange), delete_rabbitmq
    if kind == "nats":
        prefix = f"charpente_docs_{token}"
        code = code.replace('"charpente.posts.*"', repr(f"{prefix}.posts.*"))
        code = code.replace('"CHARPENTE"', repr(prefix.upper()))
        code = code.replace('"moderation"', repr(f"moderation_{token}"))
        code = code.replace("nats://127.0.0.1:4222", NATS_URL)

        async def delete_nats() -> None:
            client = await nats.connect(NATS_URL)
            await client.jetstream().delete_stream(prefix.upper())
            await client.close()

        return code, NatsBus(NATS_URL, prefix=prefix), delete_nats
    stream = f"charpente:docs:{token}:events"
    code = code.replace('"charpente:events"', repr(stream))
    code = code.replace("redis://127.0.0.1:6379/0", REDIS_URL)

    async def delete_redis() -> None:
        client = Redis.from_url(REDIS_URL)
        await client.delete(stream)
        await client.aclose()

    return code, RedisStreamBus(REDIS_URL, stream=stream), delete_redis


def event(n: int, resource: str) -> Message:
    body = msgspec.json.encode({"id": f"ev-{n}", "data": {"resource": resource, "n": n}})
    return Message(f"ev-{n}", f"{resource}.created", f"rec-{n}", body)


@pytest.mark.parametrize("kind", ["rabbitmq", "nats", "redis"])
async def test_the_pages_consumer_receives_the_posts_events_a_bus_publishes(kind, anyio_backend):
    await reachable(kind)
    code, bus, delete = renamed(consumer_code(kind), kind, uuid.uuid4().hex[:10])
    handled: list[dict[str, Any]] = []

    def handle(received: dict[str, Any]) -> None:
        handled.append(received)
        if len(handled) == 3:
            raise StopConsumerError

    namespace: dict[str, Any] = {"handle": handle, "__name__": "brokers_example"}
    await bus.start()
    try:
        exec(compile(code, f"{PAGE.name} ({kind})", "exec"), namespace)
        consumer = asyncio.ensure_future(namespace["main"]())
        await asyncio.sleep(1.0)  # the example declares its queue, consumer or group first
        assert not consumer.done(), consumer.exception()
        await bus.publish([event(1, "posts"), event(2, "likes"), event(3, "posts")])
        await bus.publish([event(4, "posts")])
        with pytest.raises(StopConsumerError):
            await asyncio.wait_for(consumer, 10)
    finally:
        await bus.close()
        await delete()

    assert [h["id"] for h in handled] == ["ev-1", "ev-3", "ev-4"]
