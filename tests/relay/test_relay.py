"""The history and the outbox relay: events appended with their write (and only then),
published at least once, in order per record, through broker outages and by several relays."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import json
import random
from collections.abc import AsyncIterator
from typing import Any

import pytest
import sqlalchemy as sa
from tests.bus.brokers import Broker, reachable, with_address
from tests.bus.proxy import TcpProxy

from charpente.bus.memory import MemoryBus
from charpente.errors import ApiError
from charpente.loader import load_design_text
from charpente.runtime.caller import SYSTEM
from charpente.runtime.events import REDACTED, Message, event_from_cloudevent
from charpente.runtime.hooks import Hooks
from charpente.runtime.relay import Relay
from charpente.runtime.resilience import Backoff, CircuitBreaker
from charpente.runtime.service import Service
from charpente.sql.database import SqlDatabase
from charpente.sql.engine import create_engine
from charpente.sql.history import archive_events
from charpente.sql.outbox import SqlOutbox
from charpente.sql.schema import build_metadata

pytestmark = pytest.mark.anyio

DESIGN = load_design_text(
    """
charpente: 1
name: relay
resources:
  posts:
    fields:
      title: {type: string, required: true, unique: true}
      n: {type: int, default: 0}
      pin: {type: string, writeonly: true}
    events: [created, updated, deleted]
  notes:
    fields:
      text: {type: string}
"""
)


@contextlib.asynccontextmanager
async def opened(target: Any, hooks: Hooks | None = None) -> AsyncIterator[Service]:
    engine = create_engine(target.url, schema=target.schema, pool_size=12)
    async with engine.begin() as conn:
        await conn.run_sync(build_metadata(DESIGN).create_all)
    database = SqlDatabase(engine, DESIGN)
    try:
        yield Service(DESIGN, database, hooks=hooks)
    finally:
        await database.close()


def database_of(service: Service) -> SqlDatabase:
    assert isinstance(service.database, SqlDatabase)
    return service.database


async def count(service: Service, table: str) -> int:
    async with database_of(service).reader() as ex:
        return int(await ex.scalar(sa.text(f"SELECT count(*) FROM {table}")))


def relay_of(service: Service, bus: Any, batch: int = 500) -> Relay:
    fast = CircuitBreaker(threshold=3, cool_down=0.2)
    return Relay(
        SqlOutbox(database_of(service), "urn:charpente:relay"),
        bus,
        service.clock,
        batch=batch,
        breaker=fast,
        backoff=Backoff(0.02, 0.2),
    )


async def drain(relay: Relay) -> int:
    published = 0
    while sent := await relay.relay_once():
        published += sent
    return published


# --- the history -------------------------------------------------------------------------


async def test_each_write_appends_one_event_with_its_change_and_actor(db_target: Any) -> None:
    async with opened(db_target) as service:
        created = await service.create("posts", {"title": "a", "pin": "1234"}, caller=SYSTEM)
        assert created.item is not None
        post = str(created.item.record["id"])
        await service.update("posts", post, {"n": 2}, caller=SYSTEM, request_id="req-2")
        await service.update("posts", post, {"n": 2}, caller=SYSTEM)  # changes nothing
        await service.delete("posts", post, caller=SYSTEM)
        events = await service.database.history("posts", post, None, 10)

    assert [e.action for e in events] == ["deleted", "updated", "created"]
    deleted, updated, made = events
    assert made.changes == {"title": "a", "n": 0, "pin": REDACTED}  # never the pin itself
    assert updated.changes == {"n": 2}
    assert updated.request_id == "req-2"
    assert deleted.changes == {}
    assert [e.version for e in events] == [2, 2, 1]
    assert all(e.actor is None for e in events)  # the engine itself
    assert made.id < updated.id < deleted.id  # UUIDv7: in time order


async def test_a_write_that_rolls_back_leaves_no_event_and_no_outbox_row(db_target: Any) -> None:
    hooks = Hooks()

    @hooks.before_create("posts")
    async def refuse(ctx: Any, values: dict[str, Any]) -> None:
        if values["title"] == "refused":
            raise ValueError("no")

    async with opened(db_target, hooks) as service:
        await service.create("posts", {"title": "taken"}, caller=SYSTEM)
        with pytest.raises(ApiError):
            await service.create("posts", {"title": "taken"}, caller=SYSTEM)  # unique conflict
        with pytest.raises(ValueError, match="no"):
            await service.create("posts", {"title": "refused"}, caller=SYSTEM)
        assert await count(service, "charpente_events") == 1
        assert await count(service, "charpente_outbox") == 1


async def test_only_resources_with_events_fill_the_outbox(db_target: Any) -> None:
    async with opened(db_target) as service:
        await service.create("notes", {"text": "x"}, caller=SYSTEM)
        assert await count(service, "charpente_events") == 1  # the history has every write
        assert await count(service, "charpente_outbox") == 0


# --- the relay ---------------------------------------------------------------------------


async def test_the_relay_publishes_cloudevents_in_order_and_empties_the_outbox(
    db_target: Any,
) -> None:
    bus = MemoryBus()
    subscription = await bus.subscribe()
    async with opened(db_target) as service:
        created = await service.create("posts", {"title": "a"}, caller=SYSTEM)
        assert created.item is not None
        post = str(created.item.record["id"])
        for n in range(1, 4):
            await service.update("posts", post, {"n": n}, caller=SYSTEM)
        relay = relay_of(service, bus, batch=2)
        assert await drain(relay) == 4
        assert await count(service, "charpente_outbox") == 0
        status = await relay.status()
    received = [m async for m in _take(subscription, 4)]
    assert [m.key for m in received] == ["posts.created"] + ["posts.updated"] * 3
    events = [event_from_cloudevent(m.body) for m in received]
    assert [e.version for e in events] == [1, 2, 3, 4]
    assert events[-1].record["n"] == 3
    assert "pin" not in events[-1].record  # writeonly: never in a message
    envelope = json.loads(received[0].body)
    assert envelope["specversion"] == "1.0"
    assert envelope["type"] == "charpente.posts.created"
    assert envelope["source"] == "urn:charpente:relay"
    assert envelope["id"] == received[0].id == events[0].id
    assert status.pending == 0
    assert status.lag_seconds == 0
    assert status.published == 4


async def _take(subscription: Any, n: int) -> AsyncIterator[Message]:
    async with asyncio.timeout(5):
        iterator = aiter(subscription)
        for _ in range(n):
            yield await anext(iterator)


async def test_two_relays_publish_every_event_once_and_each_record_in_order(
    pg_target: Any,
) -> None:
    bus = MemoryBus(subscription_limit=100_000)
    subscription = await bus.subscribe()
    async with opened(pg_target) as service:
        ids = []
        for i in range(20):
            made = await service.create("posts", {"title": f"p{i}"}, caller=SYSTEM)
            assert made.item is not None
            ids.append(str(made.item.record["id"]))
        for n in range(1, 16):  # interleaved updates: every batch mixes records
            for post in ids:
                await service.update("posts", post, {"n": n}, caller=SYSTEM)
        total = 20 * 16
        relays = [relay_of(service, bus, batch=37) for _ in range(2)]

        async def keep_relaying(relay: Relay) -> int:
            # a round may publish nothing while the other relay holds earlier events of
            # every record in reach: go on until the outbox is empty
            published = 0
            async with asyncio.timeout(30):
                while await count(service, "charpente_outbox"):
                    published += await relay.relay_once()
                    await asyncio.sleep(0)
            return published

        published = await asyncio.gather(*(keep_relaying(r) for r in relays))
        assert sum(published) == total
        assert all(p > 0 for p in published)  # both took part
    received = [m async for m in _take(subscription, total)]
    assert len({m.id for m in received}) == total
    versions: dict[str, list[int]] = {}
    for message in received:
        event = event_from_cloudevent(message.body)
        versions.setdefault(event.record_id, []).append(event.version)
    assert all(v == list(range(1, 17)) for v in versions.values())


# --- broker outages ----------------------------------------------------------------------

OUTAGE_WRITES = 10_000
RECORDS = 1_000


@pytest.mark.parametrize("kind", ["rabbitmq", "nats"])
async def test_ten_thousand_writes_through_a_broker_outage_all_arrive_once_in_order(
    kind: str, pg_target: Any
) -> None:
    broker: Broker = await reachable(kind)
    try:
        async with TcpProxy(*broker.address) as proxy, opened(pg_target) as service:
            bus = broker.bus(with_address(broker.url, proxy.address), timeout=2.0)
            await bus.start()
            reader = await broker.reader()
            relay = relay_of(service, bus)
            stop = asyncio.Event()
            running = asyncio.create_task(relay.run(stop))
            writing = asyncio.create_task(_write(service, OUTAGE_WRITES))
            await asyncio.sleep(1.0)
            await proxy.cut()  # the broker is gone while writes go on
            await asyncio.sleep(2.5)
            status = await relay.status()
            assert status.pending > 0  # events wait in the outbox meanwhile
            assert status.last_error is not None
            await proxy.restore()
            await writing
            async with asyncio.timeout(60):
                while await count(service, "charpente_outbox"):
                    await asyncio.sleep(0.1)
            stop.set()
            await running
            recorded = await count(service, "charpente_events")
            received = await _take_all(reader)
    finally:
        await broker.cleanup()
    unique: dict[str, Message] = {}
    order: dict[str, list[int]] = {}
    for message in received:
        if message.id in unique:
            continue  # at least once: a consumer keeps the first of each id
        unique[message.id] = message
        event = event_from_cloudevent(message.body)
        order.setdefault(event.record_id, []).append(event.version)
    assert recorded == OUTAGE_WRITES
    assert len(unique) == OUTAGE_WRITES
    assert len(order) == RECORDS
    assert all(versions == sorted(versions) for versions in order.values())


async def _write(service: Service, writes: int) -> None:
    """`writes` events: RECORDS posts created, then updates at random, 8 writers at once."""
    ids: list[str] = []

    async def create(i: int) -> None:
        made = await service.create("posts", {"title": f"t{i}"}, caller=SYSTEM)
        assert made.item is not None
        ids.append(str(made.item.record["id"]))

    async def update(k: int) -> None:
        await service.update("posts", random.choice(ids), {"n": k}, caller=SYSTEM)

    await _in_parallel([lambda i=i: create(i) for i in range(RECORDS)], 8)
    await _in_parallel([lambda k=k: update(k) for k in range(1, writes - RECORDS + 1)], 8)


async def _in_parallel(work: list[Any], width: int) -> None:
    queue = list(reversed(work))

    async def worker() -> None:
        while queue:
            await queue.pop()()

    await asyncio.gather(*(worker() for _ in range(width)))


async def _take_all(reader: Any) -> list[Message]:
    """What reached the broker, until every id arrived (or nothing more comes)."""
    taken: list[Message] = []
    seen: set[str] = set()
    size = 500
    while len(seen) < OUTAGE_WRITES:
        try:  # a take that times out loses what it got: near the end, one at a time
            batch = await reader.take(min(size, OUTAGE_WRITES - len(seen)))
        except TimeoutError:
            if size == 1:
                break
            size = 1
            continue
        taken += batch
        seen.update(m.id for m in batch)
    return taken


async def test_archiving_leaves_the_events_the_relay_still_needs(db_target: Any) -> None:
    async with opened(db_target) as service:
        await service.create("posts", {"title": "waiting"}, caller=SYSTEM)
        await service.create("notes", {"text": "not sent anywhere"}, caller=SYSTEM)
        written: list[bytes] = []
        later = service.clock.now() + datetime.timedelta(days=1)
        archived = await archive_events(database_of(service), later, written.extend)
        assert archived == 1  # the note's; the post's event waits in the outbox
        assert await count(service, "charpente_events") == 1
        assert await drain(relay_of(service, MemoryBus())) == 1
        assert await archive_events(database_of(service), later, written.extend) == 1
        assert await count(service, "charpente_events") == 0
        assert len(written) == 2
