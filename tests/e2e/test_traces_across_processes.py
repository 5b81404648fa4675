"""One trace across processes: `charpente serve` makes the server span and the write's
producer span, `charpente worker` (CHARPENTE_WORKER=separate, RabbitMQ) sends the event in
a span that is its child; both export over OTLP/HTTP to a collector played by the test."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from tests.bus.brokers import RabbitBroker, reachable
from tests.e2e.test_observability import _Collector, serving

DESIGN = """
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
COMMAND = [sys.executable, "-c", "from charpente.cli.main import main; main()"]
CALLER = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def spans_of(bodies: list[bytes]) -> list[dict[str, Any]]:
    found = []
    for body in bodies:
        request = ExportTraceServiceRequest.FromString(body)
        for resource in request.resource_spans:
            attributes = {a.key: a.value.string_value for a in resource.resource.attributes}
            for scope in resource.scope_spans:
                for span in scope.spans:
                    found.append(
                        {
                            "service": attributes.get("service.name"),
                            "name": span.name,
                            "trace": span.trace_id.hex(),
                            "id": span.span_id.hex(),
                            "parent": span.parent_span_id.hex(),
                        }
                    )
    return found


def test_the_workers_send_span_is_a_child_of_the_servers_write(
    pg_target: Any, tmp_path: Path
) -> None:
    design = tmp_path / "design.yaml"
    design.write_text(DESIGN)
    broker = asyncio.run(reachable("rabbitmq"))
    assert isinstance(broker, RabbitBroker)
    collector = _Collector()
    env = {
        "CHARPENTE_DATABASE_URL": pg_target.url,
        "CHARPENTE_DATABASE_SCHEMA": pg_target.schema,
        "CHARPENTE_DESIGN": str(design),
        "CHARPENTE_BUS_URL": f"{broker.url}?exchange={broker.exchange}",
        "CHARPENTE_WORKER": "separate",
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{collector.port}",
        "OTEL_BSP_SCHEDULE_DELAY": "100",
    }
    try:
        with serving(tmp_path, OTEL_SERVICE_NAME="the-server", **env) as (base, server):
            worker = subprocess.Popen(
                [*COMMAND, "worker"],
                env={**os.environ, **env, "OTEL_SERVICE_NAME": "the-worker"},
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
            try:
                made = httpx.post(
                    f"{base}/v1/posts", json={"title": "hi"}, headers={"traceparent": CALLER}
                )
                assert made.status_code == 201, made.text
                deadline = time.monotonic() + 30
                while not any(s["name"] == "send posts.created" for s in received(collector)):
                    assert worker.poll() is None, worker.stderr.read()  # type: ignore[union-attr]
                    assert time.monotonic() < deadline, "the worker's send span never came"
                    time.sleep(0.2)
            finally:
                worker.send_signal(signal.SIGTERM)
                worker.wait(timeout=20)
            server.send_signal(signal.SIGTERM)
            server.wait(timeout=20)
        spans = received(collector)
    finally:
        collector.stop()
        asyncio.run(broker.cleanup())
    trace_id = CALLER.split("-")[1]
    (write,) = [s for s in spans if s["name"] == "POST /v1/posts"]
    (create,) = [s for s in spans if s["name"] == "create posts.created"]
    (send,) = [s for s in spans if s["name"] == "send posts.created"]
    assert write["service"] == create["service"] == "the-server"
    assert send["service"] == "the-worker"
    assert write["trace"] == create["trace"] == send["trace"] == trace_id
    assert create["parent"] == write["id"]
    assert send["parent"] == create["id"]
    assert any(s["name"] == "INSERT posts" and s["parent"] == write["id"] for s in spans)


def received(collector: _Collector) -> list[dict[str, Any]]:
    return spans_of([body for path, _, body in collector.received if path == "/v1/traces"])
