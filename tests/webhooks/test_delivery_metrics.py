"""Webhook deliveries are counted by outcome, and dead letters apart."""

from __future__ import annotations

import pytest
from webhook_support import MakeSetup, Receiver, message, run_until

from charpente.runtime import metrics
from charpente.runtime.webhooks import RetrySchedule

pytestmark = pytest.mark.anyio


def value(metric: object) -> float:
    return float(metric._value.get())  # type: ignore[attr-defined]


async def test_deliveries_are_counted_by_outcome_and_dead_letters_apart(
    make_setup: MakeSetup, receiver: Receiver
) -> None:
    first, gone = message(), message()
    receiver.script = lambda sent, attempt: (
        "410" if sent == gone.id else ("500" if attempt == 1 else "200")
    )
    setup = await make_setup(receiver.url)
    webhooks = setup.webhooks(schedule=RetrySchedule(delays=(0.0, 0.1), jitter=0.0))
    names = ("delivered", "failed", "dead")
    outcomes = {name: metrics.WEBHOOK_DELIVERIES.labels(name) for name in names}
    before = {name: value(child) for name, child in outcomes.items()}
    dead_before = value(metrics.WEBHOOK_DEAD_LETTERS)
    await setup.fan_out(webhooks, [first, gone])

    async def settled() -> bool:
        found = await webhooks.store.deliveries(None, None, 10)
        return all(d.state in ("delivered", "dead") for d in found)

    await run_until(webhooks, settled, limit=10)
    added = {name: value(child) - before[name] for name, child in outcomes.items()}
    assert added == {"delivered": 1, "failed": 1, "dead": 1}
    assert value(metrics.WEBHOOK_DEAD_LETTERS) == dead_before + 1
