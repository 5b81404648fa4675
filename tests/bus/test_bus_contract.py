"""The Bus port's contract, run on every adapter against the real brokers of this machine.

In process, RabbitMQ, NATS JetStream and Redis Streams: a publish is confirmed and reaches
an independent consumer whole and in order; subscriptions see what is published after
them, each one all of it; a slow subscriber is dropped, never the publisher held up. The
outage cases put a TCP proxy between the bus and its broker: a dead or hung broker makes
publish fail within its timeout, and the bus publishes again once the broker is back.
Servers missing here skip these cases, unless CHARPENTE_REQUIRE_SERVICES=1.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator

import aio_pika
import nats
import pytest
from redis.asyncio import Redis
from tests.bus.brokers import Broker, NatsBroker, RedisBroker, reachable, with_address
from tests.bus.proxy import TcpProxy

from charpente.bus.subscription import QueueSubscription
from charpente.runtime.events import Message
from charpente.runtime.ports import Bus, BusError, Subscription

pytestmark = pytest.mark.anyio

ALL = ["memory", "rabbitmq", "nats", "redis"]
NETWORK = ["rabbitmq", "nats", "redis"]
OUTAGE_TIMEOUT = 1.0  # the bus's timeout in outage cases: publish must give up by then
SLACK = 1.5  # seconds allowed beyond it (a loaded CI machine)


@contextlib.asynccontextmanager
async def broker_for(kind: str) -> AsyncIterator[Broker]:
    found = await reachable(kind)
    try:
        yield found
    finally:
        await found.cleanup()


@pytest.fixture(params=ALL)
async def broker(request: pytest.FixtureRequest, anyio_backend: str) -> AsyncIterator[Broker]:
    async with broker_for(request.param) as found:
        yield found


@pytest.fixture(params=NETWORK)
async def network_broker(
    request: pytest.FixtureRequest, anyio_backend: str
) -> AsyncIterator[Broker]:
    async with broker_for(request.param) as found:
        yield found


@pytest.fixture
async def nats_broker(anyio_backend: str) -> AsyncIterator[NatsBroker]:
    async with broker_for("nats") as found:
        assert isinstance(found, NatsBroker)
        yield found


@pytest.fixture
async def redis_broker(anyio_backend: str) -> AsyncIterator[RedisBroker]:
    async with broker_for("redis") as found:
        assert isinstance(found, RedisBroker)
        yield found


@pytest.fixture
async def rabbitmq_broker(anyio_backend: str) -> AsyncIterator[Broker]:
    async with broker_for("rabbitmq") as found:
        yield found


@pytest.fixture
async def proxy(network_broker: Broker) -> AsyncIterator[TcpProxy]:
    async with TcpProxy(*network_broker.address) as running:
        yield running


def messages(count: int, key: str = "posts.created") -> list[Message]:
    """`count` messages with ids of their own; bodies and subjects tell them apart."""
    run = uuid.uuid4().hex[:8]
    return [
        Message(f"{run}-{n:04d}", key, f"rec-{n % 7}", f'{{"n": {n}}}'.encode())
        for n in range(count)
    ]


async def started(bus: Bus) -> Bus:
    await bus.start()
    return bus


async def take(subscription: Subscription, count: int, wait: float = 10.0) -> list[Message]:
    taken: list[Message] = []
    async with asyncio.timeout(wait):
        async for message in subscription:
            taken.append(message)
            if len(taken) == count:
                break
    return taken


async def publish_when_back(bus: Bus, batch: list[Message], within: float = 20.0) -> float:
    """Publish `batch` as soon as the bus can again; seconds it took. Fails after `within`."""
    began = time.monotonic()
    while True:
        try:
            await bus.publish(batch)
            return time.monotonic() - began
        except BusError:
            if time.monotonic() - began > within:
                raise
            await asyncio.sleep(0.2)


# --- publishing ----------------------------------------------------------------------------


async def test_a_confirmed_batch_reaches_an_independent_consumer_whole_and_in_order(broker):
    bus = await started(broker.bus())
    reader = await broker.reader()
    batch = messages(250) + messages(3, "posts.deleted")

    await bus.publish(batch)

    assert await reader.take(len(batch)) == batch


async def test_batches_published_one_after_another_arrive_in_that_order(broker):
    bus = await started(broker.bus())
    reader = await broker.reader()
    first, second = messages(20), messages(20, "likes.created")

    await bus.publish(first)
    await bus.publish(second)

    assert await reader.take(40) == first + second


async def test_an_empty_batch_is_confirmed_at_once(broker):
    bus = await started(broker.bus())
    await bus.publish([])


async def test_a_key_a_broker_would_read_as_a_wildcard_is_refused_before_sending(broker):
    bus = await started(broker.bus())
    bad = Message("x", "posts.*", "rec", b"{}")
    with pytest.raises(ValueError, match="routing key"):
        await bus.publish([*messages(1), bad])


async def test_publishing_before_start_or_after_close_raises_bus_error(broker):
    bus = broker.bus()
    if broker.kind != "memory":  # the in-process bus has nothing to start
        with pytest.raises(BusError, match="not started"):
            await bus.publish(messages(1))
    await bus.start()
    await bus.close()
    with pytest.raises(BusError, match="closed"):
        await bus.publish(messages(1))
    with pytest.raises(BusError, match="closed"):
        await bus.subscribe()


# --- subscribing ----------------------------------------------------------------------------


async def test_a_subscription_sees_every_message_published_after_it(broker):
    bus = await started(broker.bus())
    subscription = await bus.subscribe()
    batch = messages(30)

    await bus.publish(batch)

    assert await take(subscription, 30) == batch
    await subscription.close()


async def test_two_subscriptions_each_see_every_message(broker):
    bus = await started(broker.bus())
    one, two = await bus.subscribe(), await bus.subscribe()
    batch = messages(10)

    await bus.publish(batch)

    assert await take(one, 10) == batch
    assert await take(two, 10) == batch
    await one.close()
    await two.close()


async def test_a_subscription_sees_messages_from_another_process_bus(network_broker):
    broker = network_broker
    listener, publisher = await started(broker.bus()), await started(broker.bus())
    subscription = await listener.subscribe()
    batch = messages(5)

    await publisher.publish(batch)

    assert await take(subscription, 5) == batch
    await subscription.close()


async def test_a_closed_subscription_ends_its_iteration_and_gets_nothing_more(broker):
    bus = await started(broker.bus())
    subscription = await bus.subscribe()
    await subscription.close()

    await bus.publish(messages(3))

    async with asyncio.timeout(5):
        assert [m async for m in subscription] == []


async def test_a_subscriber_that_falls_behind_is_dropped_and_the_publisher_goes_on(broker):
    bus = await started(broker.bus(subscription_limit=5))
    subscription = await bus.subscribe()
    independent = broker.kind != "memory"  # in process, a reader is one more subscription
    reader = await broker.reader() if independent else None
    batch = messages(40)

    async with asyncio.timeout(5):
        await bus.publish(batch)  # nobody reads the subscription: this must not wait for it

    got: list[Message] = []

    async def read_all() -> None:
        async with asyncio.timeout(10):
            async for message in subscription:  # what came first, then the error
                got.append(message)

    with pytest.raises(BusError, match="fell 5 messages behind"):
        await read_all()
    assert got == batch[: len(got)]  # the first ones, in order, then the drop
    assert len(got) < len(batch)
    if reader is not None:
        assert await reader.take(40) == batch  # the broker lost nothing


async def test_closing_the_bus_ends_its_subscriptions(broker):
    bus = await started(broker.bus())
    subscription = await bus.subscribe()

    await bus.close()

    async with asyncio.timeout(5):
        assert [m async for m in subscription] == []


# --- what only some brokers promise ---------------------------------------------------------


async def test_nats_keeps_one_copy_of_a_message_published_twice(nats_broker):
    bus = await started(nats_broker.bus())
    reader = await nats_broker.reader()
    batch = messages(3)

    await bus.publish(batch)
    await bus.publish(batch[1:2])  # a relay that retries after a lost ack
    await bus.publish(messages(1))

    assert await nats_broker.stored() == 4
    assert [m.id for m in await reader.take(4)][:3] == [m.id for m in batch]


async def test_redis_keeps_the_stream_near_its_maxlen(redis_broker):
    bus = await started(redis_broker.bus(maxlen=50))

    for _ in range(10):
        await bus.publish(messages(100))

    assert 50 <= await redis_broker.length() <= 250  # `~`: trimmed by whole nodes of 100


async def test_rabbitmq_keeps_messages_for_a_named_queue_until_it_is_read(rabbitmq_broker):
    queue_name = f"charpente.test.{rabbitmq_broker.token}.kept"
    bus = await started(rabbitmq_broker.bus(queue=queue_name))
    batch = messages(5)

    await bus.publish(batch)

    connection = await aio_pika.connect(rabbitmq_broker.url, timeout=5)
    try:
        channel = await connection.channel()
        queue = await channel.declare_queue(queue_name, durable=True, passive=True)
        ids = []
        for _ in batch:
            incoming = await queue.get(no_ack=True, timeout=5)
            assert incoming is not None
            ids.append(incoming.message_id)
        assert ids == [m.id for m in batch]
        await queue.delete(if_unused=False, if_empty=False)
    finally:
        await connection.close()


async def test_a_message_rabbitmq_refuses_fails_the_publish(rabbitmq_broker):
    bus = await started(rabbitmq_broker.bus())
    connection = await aio_pika.connect(rabbitmq_broker.url, timeout=5)
    try:
        channel = await connection.channel()
        full = await channel.declare_queue(  # takes one message, then RabbitMQ nacks
            f"charpente.test.{rabbitmq_broker.token}.full",
            exclusive=True,
            arguments={"x-max-length": 1, "x-overflow": "reject-publish"},
        )
        await full.bind(f"charpente.test.{rabbitmq_broker.token}", "#")

        with pytest.raises(BusError, match="not confirmed"):
            await bus.publish(messages(3))
    finally:
        await connection.close()


async def test_a_stream_gone_under_the_nats_bus_fails_the_publish(nats_broker):
    bus = await started(nats_broker.bus(timeout=2.0))
    client = await nats.connect(nats_broker.url)
    try:
        await client.jetstream().delete_stream(nats_broker.stream)
    finally:
        await client.close()

    with pytest.raises(BusError, match="not acknowledged"):
        await bus.publish(messages(2))


async def test_an_entry_redis_refuses_fails_the_publish(redis_broker):
    bus = await started(redis_broker.bus())
    client = Redis.from_url(redis_broker.url)
    try:
        await client.set(redis_broker.stream, "not a stream")  # every XADD now answers WRONGTYPE

        with pytest.raises(BusError, match="3 of 3 message"):
            await bus.publish(messages(3))
    finally:
        await client.aclose()


# --- outages --------------------------------------------------------------------------------


async def test_a_bus_that_cannot_reach_its_broker_fails_to_start_within_its_timeout(
    network_broker,
):
    unreachable = with_address(network_broker.url, "127.0.0.1:1")  # nothing listens on port 1
    if "@" not in unreachable:
        unreachable = unreachable.replace("://", "://user:s3cret-pw@", 1)
    else:
        unreachable = unreachable.replace(":guest@", ":s3cret-pw@", 1)
    bus = network_broker.bus(unreachable, timeout=OUTAGE_TIMEOUT)

    began = time.monotonic()
    with pytest.raises(BusError) as raised:
        await bus.start()

    assert time.monotonic() - began < OUTAGE_TIMEOUT + SLACK
    assert "s3cret-pw" not in str(raised.value)
    assert "127.0.0.1:1" in str(raised.value)


async def test_a_dead_broker_fails_publish_within_the_timeout_and_a_restored_one_takes_it_again(
    network_broker, proxy
):
    bus = await started(
        network_broker.bus(with_address(network_broker.url, proxy.address), timeout=OUTAGE_TIMEOUT)
    )
    reader = await network_broker.reader()
    before, during, after = messages(3), messages(2), messages(3)
    await bus.publish(before)

    await proxy.cut()
    began = time.monotonic()
    with pytest.raises(BusError):
        await bus.publish(during)
    assert time.monotonic() - began < OUTAGE_TIMEOUT + SLACK

    await proxy.restore()
    await publish_when_back(bus, after)

    confirmed = {m.id for m in before + after}
    seen = await reader.take(len(before) + len(after))
    seen += await _more(reader)  # `during` may land once the broker is back: at least once
    assert [m for m in seen if m.id in confirmed] == before + after
    assert {m.id for m in seen} <= confirmed | {m.id for m in during}


async def test_a_hung_broker_fails_publish_within_the_timeout_and_a_recovered_one_takes_it(
    network_broker, proxy
):
    bus = await started(
        network_broker.bus(with_address(network_broker.url, proxy.address), timeout=OUTAGE_TIMEOUT)
    )
    reader = await network_broker.reader()
    await bus.publish(messages(1))

    await proxy.stall()
    began = time.monotonic()
    with pytest.raises(BusError):
        await bus.publish(messages(2))
    assert time.monotonic() - began < OUTAGE_TIMEOUT + SLACK

    await proxy.restore()
    after = messages(2)
    await publish_when_back(bus, after)
    seen = await reader.take(1)
    seen += await _more(reader)
    assert [m.id for m in seen][-2:] == [m.id for m in after]


async def test_a_subscription_either_resumes_after_an_outage_or_fails_loudly(network_broker, proxy):
    """Redis resumes from the last entry it read; RabbitMQ and NATS keep no position for a
    live subscriber, so theirs raise BusError rather than silently miss messages."""
    through = with_address(network_broker.url, proxy.address)
    bus = await started(network_broker.bus(through, timeout=OUTAGE_TIMEOUT))
    direct = await started(network_broker.bus())
    subscription = await bus.subscribe()
    first, second = messages(2), messages(2)
    await direct.publish(first)
    assert await take(subscription, 2) == first

    await proxy.cut()
    await direct.publish(second)  # published while the subscriber is away
    await asyncio.sleep(0.5)
    await proxy.restore()

    if isinstance(network_broker, RedisBroker):
        assert await take(subscription, 2, wait=15) == second
    else:
        with pytest.raises(BusError, match="connection"):
            await take(subscription, 2, wait=15)
    await subscription.close()


async def _more(reader) -> list[Message]:
    """Whatever else the reader gets within a short while."""
    extra: list[Message] = []
    try:
        while True:
            async with asyncio.timeout(0.5):
                extra += await reader.take(1)
    except TimeoutError:
        return extra


def test_the_subscription_holds_at_least_one_message():
    with pytest.raises(ValueError, match="at least one"):
        QueueSubscription("memory", 0)
