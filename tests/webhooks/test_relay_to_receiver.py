"""The whole way, as `charpente worker` wires it: a write puts its event in the outbox, the
relay publishes it and owes it to the webhooks in the same transaction, and the delivery
loop POSTs it to a real receiver, signed."""

from __future__ import annotations

import json

import pytest
from webhook_support import MakeSetup, Receiver, run_until

from charpente.bus.memory import MemoryBus
from charpente.runtime.caller import SYSTEM
from charpente.runtime.events import Message
from charpente.runtime.ports import Transaction
from charpente.runtime.relay import Relay
from charpente.runtime.service import Service
from charpente.runtime.signatures import verify
from charpente.sql.outbox import SqlOutbox

pytestmark = pytest.mark.anyio


async def test_a_created_post_reaches_the_receiver_through_the_outbox_and_the_relay(
    make_setup: MakeSetup, receiver: Receiver
) -> None:
    setup = await make_setup(receiver.url)
    webhooks = setup.webhooks()
    service = Service(setup.design, setup.database)
    calls: list[int] = []

    async def fan_out(tx: Transaction, messages: list[Message]) -> None:
        calls.append(await webhooks.fan_out(tx, messages))

    relay = Relay(
        SqlOutbox(setup.database, "urn:charpente:test"), MemoryBus(), service.clock, fan_out=fan_out
    )
    created = await service.create("posts", {"body": "hello"}, caller=SYSTEM)
    assert created.item is not None
    post = created.item.record["id"]
    await service.create("likes", {"post": post}, caller=SYSTEM)  # no webhook listens to it

    assert await relay.relay_once() == 2
    assert calls == [1]

    async def delivered() -> bool:
        return len(await webhooks.store.deliveries("moderation", "delivered", 10)) == 1

    await run_until(webhooks, delivered, limit=10)
    (request,) = receiver.received
    verify(setup.environment["HOOK_SECRET"], request.headers, request.body)
    event = json.loads(request.body)
    assert event["type"] == "charpente.posts.created"
    assert event["data"]["record"]["body"] == "hello"
    assert request.headers["webhook-id"] == event["id"]
