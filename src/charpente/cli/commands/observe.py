"""What `serve` (and `worker`) add for operations: the metrics listener, the log format."""

from __future__ import annotations

import atexit
import dataclasses
import shutil
import tempfile

from charpente.cli.commands.output import fail, say
from charpente.http.metrics_server import MetricsServer
from charpente.runtime import metrics
from charpente.runtime.logcontext import LOG_FORMATS
from charpente.settings import Settings, export_metrics_directory

__all__ = ["start_metrics", "with_log_format"]


def with_log_format(settings: Settings, log_format: str | None) -> Settings:
    """`settings` with `--log-format` when it was given (it wins over CHARPENTE_LOG_FORMAT)."""
    if log_format is None:
        return settings
    if log_format not in LOG_FORMATS:
        raise fail(f"--log-format is text or json, not {log_format!r}", code=2)
    return dataclasses.replace(settings, log_format=log_format)


def check_metrics_port(port: int | None, *, enabled: bool) -> None:
    """Refuse `--metrics-port` when the metrics are switched off (CHARPENTE_METRICS=false),
    before anything else is checked or started."""
    if port is not None and not enabled:
        raise fail(f"--metrics-port {port} with CHARPENTE_METRICS=false: choose one", code=2)


def start_metrics(
    host: str, port: int | None, *, several: bool, enabled: bool = True
) -> MetricsServer | None:
    """What serving needs for its metrics: with `several` processes a private directory
    they all write their metrics to (removed at exit), and with `port` the /metrics
    listener (a daemon thread of this process). Not `enabled` (CHARPENTE_METRICS=false):
    nothing (check_metrics_port refused a port)."""
    check_metrics_port(port, enabled=enabled)
    if not enabled:
        return None
    if several:
        directory = tempfile.mkdtemp(prefix="charpente-metrics-")
        atexit.register(shutil.rmtree, directory, ignore_errors=True)
        export_metrics_directory(directory)  # before the server processes start
        metrics.share_directory(directory)
    if port is None:
        return None
    try:
        server = MetricsServer(host, port)
    except OSError as exc:
        raise fail(f"--metrics-port {port} on {host}: {exc.strerror or exc}") from None
    server.start()
    shown = f"[{host}]" if ":" in host else host
    say(f"  metrics:  http://{shown}:{server.port}/metrics")
    return server
