"""Tracing is configured by OpenTelemetry's standard variables, and off without them."""

from __future__ import annotations

import pytest

from charpente.errors import ConfigError
from charpente.settings import Settings


@pytest.mark.parametrize(
    ("environ", "exporter"),
    [
        ({}, None),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}, "otlp"),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c:4318/v1/traces"}, "otlp"),
        ({"OTEL_TRACES_EXPORTER": "console"}, "console"),
        ({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c"}, None),
        ({"OTEL_SDK_DISABLED": "true", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c"}, None),
    ],
)
def test_the_otel_variables_pick_the_exporter(environ: dict[str, str], exporter: str) -> None:
    assert Settings.from_env(environ).traces_exporter == exporter


def test_an_unknown_exporter_is_refused_naming_the_variable() -> None:
    with pytest.raises(ConfigError, match="OTEL_TRACES_EXPORTER"):
        Settings.from_env({"OTEL_TRACES_EXPORTER": "zipkin"})


def test_the_log_format_is_text_or_json() -> None:
    assert Settings.from_env({}).log_format == "text"
    assert Settings.from_env({"CHARPENTE_LOG_FORMAT": "JSON"}).log_format == "json"
    with pytest.raises(ConfigError, match="CHARPENTE_LOG_FORMAT"):
        Settings.from_env({"CHARPENTE_LOG_FORMAT": "xml"})
