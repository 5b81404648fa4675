"""`serve --metrics-port`: the Prometheus scrape on a listener of its own.

It runs in a thread of the `serve` process, beside the API's server (or the processes it
starts): bound to 127.0.0.1 unless `--metrics-host` says otherwise, it serves `/metrics`
only and answers 404 to any other path.
"""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from charpente.runtime import metrics

__all__ = ["MetricsServer"]


class _Handler(BaseHTTPRequestHandler):
    server_version = "charpente"
    sys_version = ""

    def do_GET(self) -> None:
        if self.path.split("?", 1)[0] != "/metrics":
            self._answer(404, b"not found: the metrics are at /metrics\n", "text/plain")
            return
        self._answer(200, metrics.exposition(), metrics.CONTENT_TYPE)

    def _answer(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        return  # scrapes are not worth a log line each


class MetricsServer:
    """The scrape listener; `start()` binds and serves in a daemon thread, `stop()` ends it."""

    def __init__(self, host: str, port: int) -> None:
        self._server = ThreadingHTTPServer((host, port), _Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="charpente-metrics", daemon=True
        )

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
