"""The OpenTelemetry SDK, when the OTEL_* variables ask for traces (the `otel` extra).

Imported only then, by wiring: without it no SDK module is loaded. The sampler is the SDK's
from OTEL_TRACES_SAMPLER, parent-based by default (`parentbased_always_on`; use
`parentbased_traceidratio` with OTEL_TRACES_SAMPLER_ARG=0.1 for a tenth), so a caller that
sent an unsampled `traceparent` is respected. The OTLP/HTTP exporter reads
OTEL_EXPORTER_OTLP_* (endpoint, headers, timeout) itself.
"""

from __future__ import annotations

from collections.abc import Callable

from charpente.errors import ConfigError
from charpente.runtime import tracing

__all__ = ["configure_tracing", "require_sdk"]


def configure_tracing(exporter: str, service_name: str | None) -> Callable[[], None]:
    """Install a tracer provider exporting to `exporter` (otlp | console) and turn spans on;
    the function that flushes and stops it. Raises ConfigError without the `otel` extra."""
    try:
        from opentelemetry import trace
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter
    except ModuleNotFoundError:
        raise ConfigError(
            "the OTEL_* variables ask for traces: pip install 'charpente[otel]'"
        ) from None
    if exporter == "console":
        processor = BatchSpanProcessor(ConsoleSpanExporter())
    else:
        try:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        except ModuleNotFoundError:
            raise ConfigError(
                "the OTEL_* variables ask for OTLP traces: pip install 'charpente[otel]'"
            ) from None
        processor = BatchSpanProcessor(OTLPSpanExporter())
    attributes = {} if service_name is None else {"service.name": service_name}
    provider = TracerProvider(resource=Resource.create(attributes))
    provider.add_span_processor(processor)
    trace.set_tracer_provider(provider)
    tracing.enable()
    return provider.shutdown


def require_sdk() -> None:
    """Raise ConfigError, naming the extra, when the SDK is not installed."""
    import importlib.util

    for module in ("opentelemetry.sdk", "opentelemetry.exporter.otlp.proto.http"):
        try:
            found = importlib.util.find_spec(module)
        except ModuleNotFoundError:
            found = None
        if found is None:
            raise ConfigError("the OTEL_* variables ask for traces: pip install 'charpente[otel]'")
