"""Traces at the HTTP edge and in the SQL adapter: a server span that continues the caller's
`traceparent`, a client span per statement named by the engine, with the SQL text and never
a value; an unsampled caller is respected; without tracing no span is made."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from tests.traces import by_name, exporter, recorded, traceparent

from charpente.runtime import tracing
from charpente.runtime.events import Message

CALLER_TRACE, CALLER_SPAN = 0x4BF92F3577B34DA6A3CE929D0E0E4736, 0x00F067AA0BA902B7


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    with recorded() as memory:
        yield memory


async def test_a_write_is_one_trace_from_the_server_span_to_its_statements(
    api: Any, spans: InMemorySpanExporter
) -> None:
    headers = {"traceparent": traceparent(CALLER_TRACE, CALLER_SPAN)}
    created = await api.client.post("/v1/users", json={"handle": "ada-lovelace"}, headers=headers)
    assert created.status_code == 201, created.text
    finished = spans.get_finished_spans()
    (server,) = by_name(finished, "POST /v1/users")
    assert server.kind is SpanKind.SERVER
    assert server.context.trace_id == CALLER_TRACE
    assert server.parent is not None
    assert server.parent.span_id == CALLER_SPAN
    assert server.attributes["http.route"] == "/v1/users"
    assert server.attributes["http.response.status_code"] == 201
    (insert,) = by_name(finished, "INSERT users")
    assert insert.kind is SpanKind.CLIENT
    assert insert.parent is not None
    assert insert.parent.span_id == server.context.span_id
    assert insert.attributes["db.operation.name"] == "INSERT"
    assert insert.attributes["db.collection.name"] == "users"
    text = str(insert.attributes["db.query.text"])
    assert text.startswith("INSERT INTO")
    assert "ada-lovelace" not in text  # parameters, never values
    assert all(s.context.trace_id == CALLER_TRACE for s in finished)


async def test_an_unsampled_caller_is_respected(api: Any, spans: InMemorySpanExporter) -> None:
    headers = {"traceparent": traceparent(CALLER_TRACE, CALLER_SPAN, sampled=False)}
    assert (await api.client.get("/v1/users", headers=headers)).status_code == 200
    assert spans.get_finished_spans() == ()


async def test_without_tracing_no_span_is_made(api: Any) -> None:
    memory = exporter()
    memory.clear()
    assert (await api.client.get("/v1/users")).status_code == 200
    assert memory.get_finished_spans() == ()


EVENTFUL = """
charpente: 1
name: eventful
resources:
  notes:
    access: {read: true, create: true}
    fields: {text: string}
    events: [created]
"""


async def test_a_write_in_an_unsampled_trace_keeps_its_context_and_makes_no_span(
    make_api: Any, spans: InMemorySpanExporter
) -> None:
    api = await make_api(EVENTFUL)
    unsampled = traceparent(CALLER_TRACE, CALLER_SPAN, sampled=False)
    made = await api.client.post(
        "/v1/notes", json={"text": "hi"}, headers={"traceparent": unsampled}
    )
    assert made.status_code == 201, made.text
    async with api.engine.connect() as conn:
        kept = (
            await conn.execute(sa.text("SELECT traceparent FROM charpente_outbox"))
        ).scalar_one()
    trace_id, _, flags = kept.split("-")[1:]
    assert (int(trace_id, 16), flags) == (CALLER_TRACE, "00")  # the decision travels with it
    assert spans.get_finished_spans() == ()
    message = Message(id="1", key="notes.created", subject="n", body=b"{}", traceparent=kept)
    with tracing.send_spans([message], "rabbitmq") as sent:
        assert sent == [message]
    assert spans.get_finished_spans() == ()
