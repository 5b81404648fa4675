"""Spans recorded in memory by the OpenTelemetry SDK, for the tests of traces.

A process has one tracer provider: the first test that asks installs it (a parent-based
sampler, as `charpente serve` gets by default) and every later one reuses it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from charpente.runtime import tracing

_exporter: list[InMemorySpanExporter] = []


def exporter() -> InMemorySpanExporter:
    if not _exporter:
        memory = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(memory))
        trace.set_tracer_provider(provider)
        _exporter.append(memory)
    return _exporter[0]


@contextmanager
def recorded() -> Iterator[InMemorySpanExporter]:
    """Tracing on, spans kept in memory (cleared first); off again at the end."""
    memory = exporter()
    memory.clear()
    tracing.enable()
    try:
        yield memory
    finally:
        tracing.enable(False)


def by_name(spans: tuple[ReadableSpan, ...], name: str) -> list[ReadableSpan]:
    return [s for s in spans if s.name == name]


def traceparent(trace_id: int, span_id: int, sampled: bool = True) -> str:
    return f"00-{trace_id:032x}-{span_id:016x}-{'01' if sampled else '00'}"
