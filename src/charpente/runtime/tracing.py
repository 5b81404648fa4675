"""Traces: OpenTelemetry's API in the code, an SDK only when one is configured.

Without a configured SDK (`configure_from_environment` found no OTEL_* exporter setting, or
the `otel` extra is not installed) `enabled()` is False and the engine makes no span at all:
tracing then costs one boolean test per request and per statement. With one, the HTTP edge
opens a server span per request, the SQL adapter a client span per statement, and the
context travels with the work (the outbox, webhooks, jobs) as a W3C `traceparent`.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import msgspec
from opentelemetry import context as otel_context, propagate, trace

if TYPE_CHECKING:
    from charpente.runtime.events import Message

__all__ = [
    "continued",
    "current_traceparent",
    "database_span",
    "delivery_span",
    "enable",
    "enabled",
    "extract",
    "ids_of_current_span",
    "inject",
    "producer_context",
    "send_spans",
    "traceparent_in",
    "traceparent_of",
    "tracer",
]

_state = {"enabled": False}
tracer = trace.get_tracer("charpente")


def enabled() -> bool:
    """Whether a tracer provider was configured (spans are made and exported)."""
    return _state["enabled"]


def recording() -> bool:
    """Whether the current span is sampled (its children are recorded and exported)."""
    return trace.get_current_span().is_recording()


def enable(on: bool = True) -> None:
    """Make spans from now on (after a tracer provider was set); `enable(False)` stops."""
    global tracer  # the provider's own tracer, not the proxy made at import
    _state["enabled"] = on
    tracer = trace.get_tracer("charpente")


@contextmanager
def database_span(system: str, operation: str, collection: str, text: str) -> Iterator[None]:
    """A client span around one statement: `SELECT posts`, with the compiled text."""
    name = f"{operation} {collection}" if collection else operation
    attributes: dict[str, Any] = {
        "db.system.name": system,
        "db.operation.name": operation,
        "db.query.text": text,
    }
    if collection:
        attributes["db.collection.name"] = collection
    # A leaf: started and ended without becoming the current span (nothing runs inside it
    # that makes spans), which spares two context switches per statement.
    span = tracer.start_span(name, kind=trace.SpanKind.CLIENT, attributes=attributes)
    try:
        yield
    except BaseException as exc:
        span.record_exception(exc)
        span.set_status(trace.Status(trace.StatusCode.ERROR, type(exc).__name__))
        raise
    finally:
        span.end()


def inject(carrier: dict[str, str]) -> dict[str, str]:
    """`carrier` with the current context's `traceparent` (and `tracestate`), when tracing."""
    if enabled():
        propagate.inject(carrier)
    return carrier


def current_traceparent() -> str | None:
    """The current span's W3C traceparent, or None (no span, or tracing off)."""
    if not enabled():
        return None
    return _traceparent(trace.get_current_span().get_span_context())


def extract(carrier: Mapping[str, str]) -> otel_context.Context:
    """The context a `traceparent` (and `tracestate`) in `carrier` names."""
    return propagate.extract(carrier)


def ids_of_current_span() -> tuple[str, str] | None:
    """(trace_id, span_id) in hex of the current span, or None when there is none."""
    if not enabled():
        return None
    found = trace.get_current_span().get_span_context()
    if not found.is_valid:
        return None
    return format(found.trace_id, "032x"), format(found.span_id, "016x")


def traceparent_of(span: trace.Span) -> str:
    """The W3C traceparent that names `span`."""
    found = _traceparent(span.get_span_context())
    assert found is not None, "a span that names no trace"
    return found


def _traceparent(context: trace.SpanContext) -> str | None:
    """W3C's `00-<trace id>-<span id>-<flags>` (what the propagator writes), or None."""
    if not context.is_valid:
        return None
    return f"00-{context.trace_id:032x}-{context.span_id:016x}-{int(context.trace_flags):02x}"


def producer_context(destination: str) -> str | None:
    """A producer span for a message a write creates (`create posts.created`), child of the
    current span; its traceparent, which the outbox row keeps for the relay. In a trace the
    sampler left out, no span is made: the row keeps the request's own (unsampled) context,
    so that the relay and the receivers follow the same decision at no cost."""
    current = trace.get_current_span()
    if not current.is_recording():
        return _traceparent(current.get_span_context())
    span = tracer.start_span(
        f"create {destination}",
        kind=trace.SpanKind.PRODUCER,
        attributes={
            "messaging.operation.type": "create",
            "messaging.operation.name": "create",
            "messaging.destination.name": destination,
        },
    )
    try:
        return traceparent_of(span) if span.get_span_context().is_valid else None
    finally:
        span.end()


@contextmanager
def send_spans(messages: Sequence[Message], system: str) -> Iterator[list[Message]]:
    """The relay's send span of each traced message, a child of the write's producer span
    (its traceparent came with the outbox row); the messages to publish, whose transport
    headers carry the send span (the CloudEvent keeps the write's context)."""
    spans: list[trace.Span] = []
    sent: list[Message] = []
    for message in messages:
        if message.traceparent is None or message.traceparent.endswith("-00"):
            sent.append(message)  # untraced, or a trace the sampler left out: no span
            continue
        span = tracer.start_span(
            f"send {message.key}",
            context=extract({"traceparent": message.traceparent}),
            kind=trace.SpanKind.PRODUCER,
            attributes={
                "messaging.system": system,
                "messaging.operation.type": "send",
                "messaging.operation.name": "send",
                "messaging.destination.name": message.key,
                "messaging.message.id": message.id,
            },
        )
        spans.append(span)
        sent.append(dataclasses.replace(message, traceparent=traceparent_of(span)))
    try:
        yield sent
    except BaseException as exc:
        for span in spans:
            span.set_status(trace.Status(trace.StatusCode.ERROR, type(exc).__name__))
        raise
    finally:
        for span in spans:
            span.end()


_TRACEPARENT = re.compile(r"00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}")


class _Traced(msgspec.Struct):
    traceparent: str | None = None


_traced = msgspec.json.Decoder(_Traced)


def traceparent_in(cloudevent: bytes) -> str | None:
    """The `traceparent` extension of a CloudEvent's bytes, when it has a well-formed one."""
    try:
        found = _traced.decode(cloudevent).traceparent
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None
    return found if found is not None and _TRACEPARENT.fullmatch(found) else None


@contextmanager
def delivery_span(webhook: str, written: str) -> Iterator[str]:
    """A client span for one webhook attempt, child of the write (`written`, the CloudEvent's
    traceparent); the traceparent the request sends. Without tracing, the write's own."""
    if not enabled():
        yield written
        return
    with tracer.start_as_current_span(
        f"POST webhook {webhook}",
        context=extract({"traceparent": written}),
        kind=trace.SpanKind.CLIENT,
        attributes={"http.request.method": "POST", "charpente.webhook": webhook},
    ) as span:
        yield traceparent_of(span)


@contextmanager
def continued(name: str, parent: str) -> Iterator[None]:
    """An internal span continuing the trace `parent` (a traceparent) names: a job's run."""
    with tracer.start_as_current_span(name, context=extract({"traceparent": parent})):
        yield  # an exception is recorded on the span, and sets its status to error
