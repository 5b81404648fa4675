"""`charpente serve` as real processes: the metrics of every worker in one scrape on
`--metrics-port`, a scrape promtool finds nothing to say about, and `--log-format json`
(every line ours and uvicorn's one JSON object)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

START_TIMEOUT = 30.0
REQUIRE_SERVICES = os.environ.get("CHARPENTE_REQUIRE_SERVICES") == "1"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def promtool() -> str | None:
    """promtool from CHARPENTE_PROMTOOL (CI extracts Debian's package there), else PATH."""
    return os.environ.get("CHARPENTE_PROMTOOL") or shutil.which("promtool")


@contextmanager
def serving(
    tmp_path: Path, *options: str, **env: str
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    environ = {
        **os.environ,
        "CHARPENTE_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'obs.db'}",
        "CHARPENTE_DESIGN": "template:social",
        **env,
    }
    command = [sys.executable, "-c", "from charpente.cli.main import main; main()"]
    process = subprocess.Popen(
        [*command, "serve", "--migrate", "--port", str(port), *options],
        env=environ,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if process.poll() is not None:
                raise AssertionError(f"serve exited: {process.stderr.read().decode()}")  # type: ignore[union-attr]
            try:
                if httpx.get(f"{base}/healthz", timeout=0.5).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError("serve did not answer /healthz in time")
            time.sleep(0.1)
        yield base, process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def counts(text: str, name: str, **labels: str) -> float:
    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and labels.items() <= sample.labels.items():
                total += sample.value
    return total


def test_the_metrics_port_adds_up_every_worker_and_promtool_finds_nothing(
    tmp_path: Path,
) -> None:
    metrics_port = free_port()
    options = ("--workers", "2", "--metrics-port", str(metrics_port))
    with serving(tmp_path, *options) as (base, _):
        with httpx.Client(base_url=base) as client:
            for _ in range(40):
                assert client.get("/v1/posts").status_code == 200
            assert client.get("/metrics").status_code == 401  # the API's port: admins only
        scrape = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5)
        assert scrape.status_code == 200
        assert httpx.get(f"http://127.0.0.1:{metrics_port}/other").status_code == 404
    text = scrape.text
    route = {"http_route": "/v1/posts", "http_request_method": "GET"}
    assert counts(text, "http_server_request_duration_seconds_count", **route) == 40
    assert counts(text, "charpente_build_info", design="social") >= 1
    assert counts(text, "db_client_operation_duration_seconds_count", db_operation_name="SELECT")
    found = promtool()
    if found is None:
        if REQUIRE_SERVICES:
            pytest.fail("promtool is needed: set CHARPENTE_PROMTOOL (CI extracts it)")
        pytest.skip("promtool is not installed (set CHARPENTE_PROMTOOL)")
    checked = subprocess.run(
        [found, "check", "metrics"], input=text, capture_output=True, text=True, check=False
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert checked.stdout.strip() == ""
    assert checked.stderr.strip() == ""


def test_json_logs_are_one_object_per_line_ours_and_uvicorns(tmp_path: Path) -> None:
    env = {"CHARPENTE_ACCESS_LOG": "true", "CHARPENTE_LOG_LEVEL": "debug"}
    with serving(tmp_path, "--log-format", "json", **env) as (base, process):
        assert httpx.get(f"{base}/v1/posts", headers={"X-Request-ID": "req-42"}).status_code == 200
        assert httpx.get(f"{base}/v1/posts/some-id").status_code == 404
        time.sleep(0.3)
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=15)
        output = process.stderr.read().decode()  # type: ignore[union-attr]
    lines = [line for line in output.splitlines() if line.strip()]
    assert lines
    records = [json.loads(line) for line in lines]  # every line is one JSON object
    for record in records:
        assert {"timestamp", "level", "message", "request_id", "trace_id", "span_id"} <= set(record)
        assert record["timestamp"].endswith("Z")
    loggers = {record["logger"] for record in records}
    assert any(name.startswith("uvicorn") for name in loggers)
    access = [r for r in records if r["logger"] == "charpente.access"]
    first = next(r for r in access if r["request_id"] == "req-42")
    assert first["http.route"] == "/v1/posts"
    assert first["status"] == 200
    assert isinstance(first["duration_s"], float)
    missing = next(r for r in access if r["status"] == 404)
    assert missing["http.route"] == "/v1/posts/{id}"


class _Collector:
    """An OTLP/HTTP endpoint that keeps what it is sent."""

    def __init__(self) -> None:
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        received = self.received = []  # type: list[tuple[str, str, bytes]]

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                received.append((self.path, self.headers.get("content-type", ""), body))
                self.send_response(200)
                self.send_header("content-type", "application/x-protobuf")
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                return

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def test_otlp_variables_export_the_server_spans_to_a_collector(tmp_path: Path) -> None:
    collector = _Collector()
    try:
        env = {
            "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{collector.port}",
            "OTEL_SERVICE_NAME": "charpente-e2e",
            "OTEL_BSP_SCHEDULE_DELAY": "100",
        }
        with serving(tmp_path, **env) as (base, process):
            caller = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
            answer = httpx.get(f"{base}/v1/posts", headers={"traceparent": caller})
            assert answer.status_code == 200
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=15)  # the last spans are exported when it stops
    finally:
        collector.stop()
    sent = [(kind, body) for path, kind, body in collector.received if path == "/v1/traces"]
    assert sent, collector.received
    assert {kind for kind, _ in sent} == {"application/x-protobuf"}
    traces = [body for _, body in sent]
    everything = b"".join(traces)
    assert b"GET /v1/posts" in everything
    assert b"charpente-e2e" in everything
    assert bytes.fromhex("0af7651916cd43dd8448eb211c80319c") in everything


def test_the_worker_serves_its_own_metrics(tmp_path: Path) -> None:
    with serving(tmp_path):  # migrates the database the worker then uses
        metrics_port = free_port()
        environ = {
            **os.environ,
            "CHARPENTE_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'obs.db'}",
            "CHARPENTE_DESIGN": "template:social",
        }
        command = [sys.executable, "-c", "from charpente.cli.main import main; main()"]
        worker = subprocess.Popen(
            [*command, "worker", "--metrics-port", str(metrics_port)],
            env=environ,
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        try:
            deadline = time.monotonic() + START_TIMEOUT
            while True:
                try:
                    scrape = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=1)
                    if "charpente_build_info{" in scrape.text:
                        break
                except httpx.TransportError:
                    pass
                assert worker.poll() is None, worker.stderr.read().decode()  # type: ignore[union-attr]
                assert time.monotonic() < deadline, "the worker's metrics did not come up"
                time.sleep(0.2)
        finally:
            worker.send_signal(signal.SIGTERM)
            worker.wait(timeout=15)
    assert counts(scrape.text, "charpente_build_info", design="social") == 1
    assert "charpente_outbox_published_total" in scrape.text


def test_a_metrics_port_with_metrics_switched_off_is_refused_before_serving(tmp_path: Path) -> None:
    env = {**os.environ, "CHARPENTE_METRICS": "false", "CHARPENTE_DESIGN": "template:social"}
    env["CHARPENTE_DATABASE_URL"] = f"sqlite+aiosqlite:///{tmp_path / 'app.db'}"
    for command in (["serve", "--port", str(free_port())], ["worker"]):
        done = subprocess.run(
            [sys.executable, "-c", "from charpente.cli.main import main; main()", *command,
             "--metrics-port", str(free_port())],
            env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert done.returncode == 2, done.stderr
        assert "--metrics-port" in done.stderr
        assert "CHARPENTE_METRICS=false" in done.stderr
