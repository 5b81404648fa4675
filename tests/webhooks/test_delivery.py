"""Deliveries end to end, on SQLite and PostgreSQL, to a real receiver on 127.0.0.1: fan-out
in the relay's transaction, signed attempts on the schedule, the breaker, the dead letter
and replay, 410 Gone, and claims that outlive a worker."""

from __future__ import annotations

import asyncio
import datetime
import itertools
import logging
import random
from collections.abc import Awaitable, Callable

import pytest
from webhook_support import FAST, MakeSetup, Receiver, message, run_until

from charpente.runtime.caller import SYSTEM
from charpente.runtime.ports import Delivery, Settled
from charpente.runtime.signatures import verify
from charpente.runtime.webhooks import RetrySchedule, Webhooks

pytestmark = pytest.mark.anyio

KINDS = ["500", "502", "429", "hang"]  # how the flaky receiver fails
SECRET = "whsec_" + "dHdvIHdvcmtlcnMsIG9uZSBzZWNyZXQsIG5vIGRvdWJsZSBzZW5kcw=="


async def deliveries(webhooks: Webhooks, webhook: str | None = None) -> list[Delivery]:
    return await webhooks.store.deliveries(webhook, None, 100)


def settled(webhooks: Webhooks, state: str, count: int) -> Callable[[], Awaitable[bool]]:
    """Whether exactly `count` deliveries exist, all in `state`."""

    async def done() -> bool:
        found = await deliveries(webhooks)
        return len(found) == count and all(d.state == state for d in found)

    return done


async def add_endpoint(webhooks: Webhooks, name: str, events: list[str], **more: object) -> str:
    body = {"name": name, "url": more.pop("url", "http://127.0.0.1:9/x"), "events": events}
    created = await webhooks.create_endpoint(SYSTEM, {**body, **more})
    return str(created["secret"])


async def test_fan_out_owes_each_message_to_every_enabled_endpoint_listening_to_it(
    make_setup: MakeSetup,
) -> None:
    setup = await make_setup("http://127.0.0.1:9/hook")
    webhooks = setup.webhooks()
    await add_endpoint(webhooks, "everything", ["*.*"])
    await add_endpoint(webhooks, "likes", ["likes.created"])
    await add_endpoint(webhooks, "paused", ["*.*"], enabled=False)
    created, updated, liked = message(), message(action="updated"), message("likes")

    added = await setup.fan_out(webhooks, [created, updated, liked])

    owed = {(d.webhook, d.key) for d in await deliveries(webhooks)}
    assert owed == {
        ("moderation", "posts.created"),
        ("everything", "posts.created"),
        ("everything", "posts.updated"),
        ("everything", "likes.created"),
        ("likes", "likes.created"),
    }
    assert added == 5
    assert await setup.fan_out(webhooks, [created]) == 0  # already owed: not twice


async def test_a_rolled_back_fan_out_leaves_no_delivery(make_setup: MakeSetup) -> None:
    setup = await make_setup("http://127.0.0.1:9/hook")
    webhooks = setup.webhooks()

    added: list[int] = []

    async def relay_round() -> None:
        async with setup.database.transaction() as tx:
            added.append(await webhooks.fan_out(tx, [message(), message()]))
            raise RuntimeError("the relay failed")

    with pytest.raises(RuntimeError, match="the relay failed"):
        await relay_round()

    assert added == [2]
    assert await deliveries(webhooks) == []


async def test_a_flaky_receiver_gets_every_delivery_signed_and_spaced_by_the_schedule(
    make_setup: MakeSetup, receiver: Receiver
) -> None:
    plans: dict[str, list[str]] = {}
    draw = random.Random(7)

    def script(message_id: str, attempt: int) -> str:
        # Each message fails 0 to 3 times (an error status, or an answer past the timeout).
        if message_id not in plans:
            failures = draw.randint(0, 3)
            plans[message_id] = [draw.choice(KINDS) for _ in range(failures)]
        plan = plans[message_id]
        return plan[attempt - 1] if attempt <= len(plan) else "200"

    receiver.script, receiver.hang = script, 0.8
    secret = "whsec_" + "c2VjcmV0IGJ5dGVzIGZvciB0aGUgdGVzdHMgb2Ygd2ViaG9va3M="
    setup = await make_setup(receiver.url, secret)
    webhooks = setup.webhooks(timeout=0.4, failure_threshold=100)
    messages = [message(body=f"post {n}") for n in range(12)]
    await setup.fan_out(webhooks, messages)

    await run_until(webhooks, settled(webhooks, "delivered", 12), limit=20)

    found = {d.message_id: d for d in await deliveries(webhooks)}
    failures = 0
    for sent in messages:
        requests = receiver.of(sent.id)
        assert [r.answer for r in requests][-1] == "200"
        assert len(requests) == found[sent.id].attempts == len(plans[sent.id]) + 1
        failures += len(plans[sent.id])
        for request in requests:
            assert request.body == sent.body
            verify(secret, request.headers, request.body)
        for attempt, (before, after) in enumerate(itertools.pairwise(requests), 1):
            assert after.at - before.at >= FAST.delays[attempt] * 0.8 - 0.05
    assert failures >= 6  # the receiver did fail often


async def test_a_receiver_down_for_good_ends_dead_and_replay_delivers_once_it_is_back(
    make_setup: MakeSetup, receiver: Receiver
) -> None:
    receiver.stop()  # nothing listens on its port any more
    setup = await make_setup(receiver.url)
    webhooks = setup.webhooks(failure_threshold=100)
    await setup.fan_out(webhooks, [message(), message()])

    await run_until(webhooks, settled(webhooks, "dead", 2), limit=15)

    for delivery in await deliveries(webhooks):
        assert delivery.attempts == len(FAST.delays)
        assert delivery.last_status is None
        assert delivery.last_error is not None
        assert delivery.last_error.startswith("could not connect")
    back = Receiver(port=receiver.port).start()
    try:
        assert await webhooks.replay(webhook="moderation") == 2
        await run_until(webhooks, settled(webhooks, "delivered", 2), limit=10)
    finally:
        back.stop()
    assert [d.attempts for d in await deliveries(webhooks)] == [1, 1]
    assert len(back.received) == 2
    assert await webhooks.replay() == 0  # nothing dead is left


async def test_replay_of_one_delivery_by_id_leaves_the_other_dead(
    make_setup: MakeSetup, receiver: Receiver
) -> None:
    receiver.script = lambda message_id, attempt: "500"
    setup = await make_setup(receiver.url)
    webhooks = setup.webhooks(schedule=RetrySchedule((0.0,)), failure_threshold=100)
    await setup.fan_out(webhooks, [message(), message()])
    await run_until(webhooks, settled(webhooks, "dead", 2), limit=10)
    first, second = await deliveries(webhooks)

    assert await webhooks.replay(delivery_id=first.id) == 1
    assert await webhooks.replay(delivery_id="not-an-id") == 0

    states = {d.id: (d.state, d.attempts) for d in await deliveries(webhooks)}
    assert states == {first.id: ("pending", 0), second.id: ("dead", 1)}
    assert second.last_error == "500: answer 500"


async def test_an_endpoint_that_keeps_failing_is_held_back_without_spending_attempts(
    make_setup: MakeSetup, receiver: Receiver
) -> None:
    receiver.script = lambda message_id, attempt: "500"
    setup = await make_setup(receiver.url)
    webhooks = setup.webhooks(
        schedule=RetrySchedule((0.0,) * 50, jitter=0), failure_threshold=3, cool_down=0.5
    )
    await setup.fan_out(webhooks, [message() for _ in range(4)])

    async def never() -> bool:
        return False

    with pytest.raises(AssertionError, match="did not settle"):
        await run_until(webhooks, never, limit=1.3)

    found = await deliveries(webhooks)
    # Without the breaker, zero delays would have sent hundreds; with it: the first round
    # (4 at once), then one probe per cool-down.
    assert 5 <= len(receiver.received) <= 8
    assert sum(d.attempts for d in found) == len(receiver.received)
    assert all(d.state == "pending" for d in found)
    probes = sorted(r.at for r in receiver.received)[4:]
    for before, after in itertools.pairwise(probes):
        assert after - before >= 0.45


async def test_410_gone_ends_the_delivery_and_disables_a_run_time_endpoint(
    make_setup: MakeSetup, receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    receiver.script = lambda message_id, attempt: "410"
    setup = await make_setup(receiver.url)
    webhooks = setup.webhooks()
    await add_endpoint(webhooks, "gone", ["posts.*"], url=receiver.url)
    await setup.fan_out(webhooks, [message()])

    with caplog.at_level(logging.WARNING, "charpente.webhooks"):
        await run_until(webhooks, settled(webhooks, "dead", 2), limit=10)

    assert {d.last_error for d in await deliveries(webhooks)} == {
        "410 Gone: the receiver wants no more deliveries"
    }
    endpoints = {e["name"]: e["enabled"] for e in await webhooks.list_endpoints(SYSTEM)}
    assert endpoints == {"moderation": True, "gone": False}
    assert "webhook 'gone' answered 410 Gone: it is disabled now" in caplog.text
    assert await setup.fan_out(webhooks, [message()]) == 1  # the design's only, now


async def test_a_design_webhook_without_its_secret_is_skipped_with_a_warning_once(
    make_setup: MakeSetup, caplog: pytest.LogCaptureFixture
) -> None:
    setup = await make_setup("http://127.0.0.1:9/hook", secret="whsec_dG9vIHNob3J0")
    with caplog.at_level(logging.WARNING, "charpente.webhooks"):
        webhooks = setup.webhooks()
    del setup.environment["HOOK_SECRET"]
    with caplog.at_level(logging.WARNING, "charpente.webhooks"):
        unset = setup.webhooks()

    assert await setup.fan_out(webhooks, [message()]) == 0
    warnings = [r.getMessage() for r in caplog.records]
    assert warnings == [
        "webhook 'moderation' is not used: the variable HOOK_SECRET: "
        "a webhook secret holds 24 to 64 bytes",
        "webhook 'moderation' is not used: the variable HOOK_SECRET (its secret) is not set",
    ]
    assert "dG9v" not in caplog.text  # never a secret's value
    listed = await unset.list_endpoints(SYSTEM)
    assert [(e["name"], e["url"], e["enabled"]) for e in listed] == [
        ("moderation", "env:HOOK_URL", False)
    ]


async def test_a_claim_holds_until_its_lease_ends_then_another_worker_takes_it(
    make_setup: MakeSetup,
) -> None:
    setup = await make_setup("http://127.0.0.1:9/hook")
    webhooks = setup.webhooks()
    await setup.fan_out(webhooks, [message()])
    store, now = webhooks.store, datetime.datetime.now(datetime.UTC)
    minute = datetime.timedelta(seconds=60)

    (taken,) = await store.claim_due(now, now + minute, "worker-1", 10)
    assert await store.claim_due(now, now + minute, "worker-2", 10) == []
    assert await store.claim_due(now, now + minute, "worker-2", 10, skip=["moderation"]) == []
    later = now + 2 * minute
    (again,) = await store.claim_due(later, later + minute, "worker-2", 10)

    assert again.id == taken.id
    outcome = Settled("delivered", 1, later, 200, None, later)
    assert not await store.settle(taken.id, "worker-1", outcome)  # its claim is gone
    assert await store.settle(again.id, "worker-2", outcome)
    (delivery,) = await deliveries(webhooks)
    assert (delivery.state, delivery.attempts, delivery.last_status) == ("delivered", 1, 200)


async def test_two_workers_never_send_the_same_attempt_twice(
    make_pg_setup: MakeSetup, receiver: Receiver
) -> None:
    receiver.delay = 0.02
    # Half the messages fail their first attempt.
    receiver.script = lambda message_id, attempt: (
        "503" if attempt == 1 and int(message_id[-1], 16) % 2 else "200"
    )
    first = await make_pg_setup(receiver.url, SECRET)
    second = await make_pg_setup(receiver.url, SECRET)  # another process: its own pool
    # Not a breaker test: five first attempts failing in a row must not pause the endpoint.
    one = first.webhooks(batch=4, failure_threshold=1_000)
    two = second.webhooks(batch=4, failure_threshold=1_000)
    messages = [message(body=str(n)) for n in range(40)]
    await first.fan_out(one, messages)
    done = settled(one, "delivered", 40)

    await asyncio.gather(run_until(one, done, limit=20), run_until(two, done, limit=20))

    for delivery in await deliveries(one):
        assert len(receiver.of(delivery.message_id)) == delivery.attempts
    assert len(receiver.received) == sum(d.attempts for d in await deliveries(one)) > 40
