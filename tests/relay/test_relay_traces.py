"""One trace from a write to its consumer: the server span of `POST /v1/posts`, its SQL
spans, the producer span whose context the outbox row keeps, the relay's send span (a relay
that shares nothing with the server but the database, as `charpente worker` does) and a
real RabbitMQ consumer's span, read from the CloudEvent's `traceparent` extension."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aio_pika
import httpx
import pytest
from opentelemetry import trace
from tests.bus.brokers import reachable
from tests.traces import by_name, recorded, traceparent

from charpente.http.app import build_app
from charpente.loader import load_design_text
from charpente.runtime import tracing
from charpente.runtime.relay import Relay
from charpente.runtime.service import Service
from charpente.sql.database import SqlDatabase
from charpente.sql.engine import create_engine
from charpente.sql.outbox import SqlOutbox
from charpente.sql.schema import build_metadata

pytestmark = pytest.mark.anyio

DESIGN = load_design_text(
    """
charpente: 1
name: traced
api_version: 1
resources:
  posts:
    access: {read: true, create: true}
    fields:
      title: {type: string, required: true}
    events: [created]
"""
)
CALLER_TRACE, CALLER_SPAN = 0x0AF7651916CD43DD8448EB211C80319C, 0xB7AD6B7169203331


async def test_a_write_is_one_trace_down_to_a_rabbitmq_consumer(db_target: Any) -> None:
    broker = await reachable("rabbitmq")
    engine = create_engine(db_target.url, schema=db_target.schema)
    async with engine.begin() as conn:
        await conn.run_sync(build_metadata(DESIGN).create_all)
    server_db = SqlDatabase(engine, DESIGN)
    worker_db = SqlDatabase(create_engine(db_target.url, schema=db_target.schema), DESIGN)
    connection = await aio_pika.connect(broker.url, timeout=5)
    try:
        with recorded() as spans:
            # the server: a traced caller writes a post
            app = build_app(Service(DESIGN, server_db), DESIGN)
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
                headers = {"traceparent": traceparent(CALLER_TRACE, CALLER_SPAN)}
                made = await client.post("/v1/posts", json={"title": "hi"}, headers=headers)
                assert made.status_code == 201, made.text
            # a consumer of its own, on the broker's own client
            channel = await connection.channel()
            exchange = await channel.declare_exchange(
                broker.exchange,  # type: ignore[attr-defined]
                aio_pika.ExchangeType.TOPIC,
                durable=True,
            )
            queue = await channel.declare_queue(exclusive=True)
            await queue.bind(exchange, "#")
            received: asyncio.Queue[aio_pika.abc.AbstractIncomingMessage] = asyncio.Queue()
            await queue.consume(received.put, no_ack=True)
            # the worker: another relay, over another engine, that only shares the database
            bus = broker.bus()
            relay = Relay(
                SqlOutbox(worker_db, "urn:charpente:traced"), bus, Service(DESIGN, worker_db).clock
            )
            assert await relay.relay_once() == 1
            async with asyncio.timeout(10):
                incoming = await received.get()
            event = json.loads(incoming.body)
            # what a consumer does: continue the write's trace from the CloudEvent
            parent = tracing.extract({"traceparent": event["traceparent"]})
            with tracing.tracer.start_as_current_span(
                "process posts.created", context=parent, kind=trace.SpanKind.CONSUMER
            ):
                pass
            finished = spans.get_finished_spans()
    finally:
        await connection.close()
        await broker.cleanup()
        await server_db.close()
        await worker_db.close()

    (server,) = by_name(finished, "POST /v1/posts")
    (insert,) = by_name(finished, "INSERT posts")
    (create,) = by_name(finished, "create posts.created")
    (send,) = by_name(finished, "send posts.created")
    (process,) = by_name(finished, "process posts.created")
    for span in (server, insert, create, send, process):
        assert span.context.trace_id == CALLER_TRACE
    assert parent_of(server) == CALLER_SPAN
    assert parent_of(insert) == server.context.span_id
    assert create.kind is trace.SpanKind.PRODUCER
    assert parent_of(create) == server.context.span_id
    assert send.kind is trace.SpanKind.PRODUCER
    assert parent_of(send) == create.context.span_id
    assert send.attributes["messaging.system"] == "rabbitmq"
    assert parent_of(process) == create.context.span_id
    # the CloudEvent carries the write's context, the transport's headers the hop
    assert event["traceparent"] == tracing_id(create)
    assert incoming.headers["traceparent"] == tracing_id(send)


def tracing_id(span: Any) -> str:
    return traceparent(span.context.trace_id, span.context.span_id)


def parent_of(span: Any) -> int | None:
    return None if span.parent is None else int(span.parent.span_id)
