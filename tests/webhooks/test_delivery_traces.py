"""Webhook deliveries send `traceparent`: the write's (from the CloudEvent) without tracing,
their own client span's, a child of the write, with it."""

from __future__ import annotations

import dataclasses
import datetime
from typing import Any

import pytest
from tests.traces import by_name, recorded, traceparent
from webhook_support import MakeSetup, Receiver, run_until

from charpente.runtime.events import Event, to_cloudevent
from charpente.runtime.ids import new_id

pytestmark = pytest.mark.anyio

WRITE_TRACE, WRITE_SPAN = 0x5B8EFFF798038103D269B633813FC60C, 0xEEE19B7EC3C1B174


def traced_message() -> Any:
    record_id = new_id()
    event = Event(
        id=new_id(),
        resource="posts",
        record_id=record_id,
        action="created",
        at=datetime.datetime.now(datetime.UTC),
        version=1,
        record={"id": record_id},
    )
    written = dataclasses.replace(event, traceparent=traceparent(WRITE_TRACE, WRITE_SPAN))
    return to_cloudevent(written, "urn:charpente:hooks")


async def deliver(make_setup: MakeSetup, receiver: Receiver) -> dict[str, str]:
    setup = await make_setup(receiver.url)
    webhooks = setup.webhooks()
    sent = traced_message()
    await setup.fan_out(webhooks, [sent])

    async def delivered() -> bool:
        return bool(receiver.of(sent.id))

    await run_until(webhooks, delivered, limit=10)
    return receiver.of(sent.id)[0].headers


async def test_a_delivery_sends_the_writes_traceparent(
    make_setup: MakeSetup, receiver: Receiver
) -> None:
    headers = await deliver(make_setup, receiver)
    assert headers["traceparent"] == traceparent(WRITE_TRACE, WRITE_SPAN)


async def test_a_traced_delivery_is_a_client_span_child_of_the_write(
    make_setup: MakeSetup, receiver: Receiver
) -> None:
    with recorded() as spans:
        headers = await deliver(make_setup, receiver)
        (span,) = by_name(spans.get_finished_spans(), "POST webhook moderation")
    assert span.context.trace_id == WRITE_TRACE
    assert span.parent is not None
    assert span.parent.span_id == WRITE_SPAN
    assert headers["traceparent"] == traceparent(WRITE_TRACE, span.context.span_id)
