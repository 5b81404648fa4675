"""The engine's metrics, in the Prometheus text format (prometheus-client).

Names follow OpenTelemetry's stable semantic conventions written Prometheus-style
(`http.server.request.duration` in seconds → `http_server_request_duration_seconds`, its
attributes with `_` for `.`); the engine's own are named `charpente_*`. Every label takes
its values from a bounded set: route templates (never a path), methods, statuses, the
design's resource and limit names, fixed outcomes. No id, email, address or token is ever
a label value.

The instruments are module-level, as prometheus-client intends: the HTTP edge, the SQL
adapter, the relay, webhooks and jobs record into them, and `exposition()` renders them.
When `serve` runs several processes (`--workers`, `--reload`) it points
PROMETHEUS_MULTIPROC_DIR at a private directory before they start, and every process
writes its values there; a scrape then adds them up (`exposition()` reads them all).
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager

from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

__all__ = [
    "ACTIVE_REQUESTS",
    "CONTENT_TYPE",
    "DB_CONNECTIONS",
    "DB_DURATION",
    "DB_PENDING",
    "DB_WAIT",
    "JOBS",
    "LIVE_STREAMS",
    "LIVE_STREAM_DURATION",
    "OUTBOX_LAG",
    "OUTBOX_PENDING",
    "OUTBOX_PUBLISHED",
    "RATE_LIMIT_REFUSALS",
    "REQUEST_DURATION",
    "WEBHOOK_DEAD_LETTERS",
    "WEBHOOK_DELIVERIES",
    "PoolGate",
    "exposition",
    "process_ended",
    "record",
    "recording",
    "set_build_info",
    "share_directory",
    "timed_operation",
]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"  # the classic text format

# OpenTelemetry's advised boundaries for http.server.request.duration and
# db.client.operation.duration.
_HTTP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10)
_DB_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10)
_STREAM_BUCKETS = (1, 10, 60, 300, 900, 3600, 4 * 3600, 24 * 3600)

REQUEST_DURATION = Histogram(
    "http_server_request_duration_seconds",
    "Duration of HTTP server requests (live change streams excluded).",
    ("http_request_method", "http_route", "http_response_status_code", "error_type"),
    buckets=_HTTP_BUCKETS,
)
ACTIVE_REQUESTS = Gauge(
    "http_server_active_requests",
    "HTTP server requests being served (live change streams excluded once open).",
    ("http_request_method",),
    multiprocess_mode="livesum",
)
DB_DURATION = Histogram(
    "db_client_operation_duration_seconds",
    "Duration of database statements, named by the statement the engine built.",
    ("db_system_name", "db_operation_name", "db_collection_name"),
    buckets=_DB_BUCKETS,
)
# OpenTelemetry's db.client.connection.count would be db_client_connection_count, which
# promtool refuses (a gauge named _count); this is its earlier name, db.client.connections.usage.
DB_CONNECTIONS = Gauge(
    "db_client_connections_usage",
    "Database connections of the pool by state (used: held by a request or a loop).",
    ("state",),
    multiprocess_mode="livesum",
)
DB_PENDING = Gauge(
    "db_client_connection_pending_requests",
    "Callers waiting for a database connection.",
    multiprocess_mode="livesum",
)
DB_WAIT = Histogram(
    "db_client_connection_wait_time_seconds",
    "Time callers waited for a database connection.",
    buckets=_DB_BUCKETS,
)
OUTBOX_LAG = Gauge(
    "charpente_outbox_lag_seconds",
    "Age of the oldest event waiting in the outbox (0 when none waits).",
    multiprocess_mode="livemax",
)
OUTBOX_PENDING = Gauge(
    "charpente_outbox_pending",
    "Events waiting in the outbox.",
    multiprocess_mode="livemax",
)
OUTBOX_PUBLISHED = Counter("charpente_outbox_published", "Events the relay published to the bus.")
WEBHOOK_DELIVERIES = Counter(
    "charpente_webhook_deliveries",
    "Webhook delivery attempts by outcome (delivered, failed: to be retried, dead).",
    ("outcome",),
)
WEBHOOK_DEAD_LETTERS = Counter(
    "charpente_webhook_dead_letters", "Webhook deliveries that became dead (no more attempts)."
)
JOBS = Counter(
    "charpente_jobs",
    "Job attempts by the state they ended in (done, retry, dead).",
    ("state",),
)
RATE_LIMIT_REFUSALS = Counter(
    "charpente_rate_limit_refusals",
    "Requests refused by a rate limit (429), by the design's limit name.",
    ("limit",),
)
LIVE_STREAMS = Gauge(
    "charpente_live_streams_open",
    "Live change streams (Server-Sent Events) open now.",
    multiprocess_mode="livesum",
)
LIVE_STREAM_DURATION = Histogram(
    "charpente_live_stream_duration_seconds",
    "How long live change streams stayed open.",
    buckets=_STREAM_BUCKETS,
)
_BUILD_INFO = Gauge(
    "charpente_build_info",
    "Always 1: the engine's version and the design served.",
    ("version", "design"),
    multiprocess_mode="livemax",
)


def set_build_info(version: str, design: str) -> None:
    """Record what this process serves (`charpente_build_info`)."""
    _BUILD_INFO.labels(version, design).set(1)


_shared = {"directory": ""}
_switch = {"on": True}


def record(on: bool) -> None:
    """Turn this process's request metrics on (the default) or off (CHARPENTE_METRICS=false):
    off, the HTTP edge and the SQL adapter record nothing and no /metrics is served."""
    _switch["on"] = on


def recording() -> bool:
    """Whether this process records and serves its metrics."""
    return _switch["on"]


def share_directory(directory: str | None) -> None:
    """Read the values of every process from `directory` (PROMETHEUS_MULTIPROC_DIR, which
    prometheus-client's processes write to when it is set before they start)."""
    _shared["directory"] = directory or ""


def process_ended() -> None:
    """Forget this process's live gauges (open requests, the pool) in the shared directory,
    so that a server process that stopped (a reload, a restarted worker) counts no more."""
    directory = _shared["directory"]
    if directory:
        multiprocess.mark_process_dead(os.getpid(), directory)  # type: ignore[no-untyped-call]


def exposition() -> bytes:
    """Every metric, in the Prometheus text format; when processes share a directory
    (`share_directory`) those of every process of the server, added up."""
    directory = _shared["directory"]
    if not directory:
        return generate_latest(REGISTRY)
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=directory)  # type: ignore[no-untyped-call]
    return generate_latest(registry)


@contextmanager
def timed_operation(system: str, operation: str, collection: str) -> Iterator[None]:
    """Observe one database statement's duration."""
    started = time.perf_counter()
    try:
        yield
    finally:
        DB_DURATION.labels(system, operation, collection).observe(time.perf_counter() - started)


class PoolGate(asyncio.Semaphore):
    """A first-come-first-served gate of `size` places (an asyncio.Semaphore) that reports
    the pool's use when entered with `async with`: connections used and idle, callers
    waiting and how long they waited."""

    def __init__(self, size: int) -> None:
        super().__init__(size)
        self._used = DB_CONNECTIONS.labels("used")
        self._idle = DB_CONNECTIONS.labels("idle")
        self._idle.inc(size)
        self._used.inc(0)

    async def __aenter__(self) -> None:
        if not _switch["on"]:
            await self.acquire()
            return
        if self.locked():
            started = time.perf_counter()
            DB_PENDING.inc()
            try:
                await self.acquire()
            finally:
                DB_PENDING.dec()
            DB_WAIT.observe(time.perf_counter() - started)
        else:
            await self.acquire()
            DB_WAIT.observe(0.0)
        self._used.inc()
        self._idle.dec()

    async def __aexit__(self, *exc: object) -> None:
        self.release()
        if not _switch["on"]:
            return
        self._used.dec()
        self._idle.inc()
