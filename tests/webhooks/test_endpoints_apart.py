"""Deliveries to different endpoints do not wait on each other: a receiver that hangs until
the sender's timeout holds back no delivery to another, and its next attempt is due
counting from the end of its own attempt."""

from __future__ import annotations

import asyncio
import datetime
import time

import pytest
from webhook_support import MakeSetup, Receiver, message

from charpente.runtime.caller import SYSTEM
from charpente.runtime.ports import Delivery
from charpente.runtime.webhooks import RetrySchedule, Webhooks

pytestmark = pytest.mark.anyio

TIMEOUT = 1.5  # the sender's total timeout: the hanging receiver answers after it
SCHEDULE = RetrySchedule(delays=(0.0, 5.0, 5.0), jitter=0.0)


async def deliveries(webhooks: Webhooks, webhook: str) -> list[Delivery]:
    return await webhooks.store.deliveries(webhook, None, 100)


async def test_a_hanging_receiver_delays_no_delivery_to_another_endpoint(
    make_setup: MakeSetup, receiver: Receiver
) -> None:
    hanging = Receiver(script=lambda message, attempt: "hang", hang=TIMEOUT + 1).start()
    try:
        setup = await make_setup(hanging.url)  # the design's `moderation` webhook hangs
        webhooks = setup.webhooks(timeout=TIMEOUT, failure_threshold=100, schedule=SCHEDULE)
        body = {"name": "search", "url": receiver.url, "events": ["posts.created"]}
        await webhooks.create_endpoint(SYSTEM, body)
        stop = asyncio.Event()
        running = asyncio.create_task(webhooks.run(stop))
        try:
            first = message(body="first")
            began = datetime.datetime.now(datetime.UTC)
            await setup.fan_out(webhooks, [first])  # owed to both endpoints
            await asyncio.sleep(0.3)  # the hanging attempt is in flight
            second = message(body="second")
            fanned = time.monotonic()
            await setup.fan_out(webhooks, [second])
            while not receiver.of(second.id):
                assert time.monotonic() - fanned < 0.5, "the hanging receiver held it back"
                await asyncio.sleep(0.02)
            assert receiver.of(first.id)
            # the hanging attempts fail at the timeout; their next one counts from then
            while len([d for d in await deliveries(webhooks, "moderation") if d.attempts]) < 2:
                assert time.monotonic() - fanned < TIMEOUT + 5, "the attempts did not fail"
                await asyncio.sleep(0.05)
        finally:
            stop.set()
            await asyncio.wait_for(running, TIMEOUT + 5)
        failed = await deliveries(webhooks, "moderation")
        assert len(failed) == 2
        for delivery in failed:
            assert delivery.state == "pending"
            assert delivery.last_error
            # not from the start of a round: from the end of the attempt, past the timeout
            due_after = began + datetime.timedelta(seconds=TIMEOUT + SCHEDULE.delays[1])
            assert delivery.next_attempt_at >= due_after, delivery
    finally:
        hanging.stop()
