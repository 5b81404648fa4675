"""`charpente worker`: relay the outbox to the bus (then deliver webhooks and run jobs) until
SIGTERM or Ctrl-C. Run one or several beside `serve` with CHARPENTE_WORKER=separate."""

from __future__ import annotations

import asyncio
import signal
from typing import Annotated

import typer

from charpente.cli.commands.config import design_and_settings, on_database
from charpente.cli.commands.design import DesignArgument, DesignOption, chosen_design
from charpente.cli.commands.observe import start_metrics
from charpente.cli.commands.output import reports_errors, say
from charpente.runtime import metrics
from charpente.settings import redacted_url
from charpente.wiring import check_worker_bus, configure_logging, run_worker

__all__ = ["worker"]


@reports_errors
def worker(
    design: DesignArgument = None,
    design_option: DesignOption = None,
    metrics_port: Annotated[
        int | None,
        typer.Option(
            "--metrics-port",
            min=0,
            max=65535,
            help="Serve /metrics (Prometheus) on this port.",
            show_default=False,
        ),
    ] = None,
    metrics_host: Annotated[
        str, typer.Option("--metrics-host", help="The address /metrics listens on.")
    ] = "127.0.0.1",
) -> None:
    """Relay events to the bus, deliver webhooks and run jobs, until stopped."""
    loaded, settings = design_and_settings(chosen_design(design, design_option))
    check_worker_bus(settings)
    metrics.record(settings.metrics)
    start_metrics(metrics_host, metrics_port, several=False, enabled=settings.metrics)
    bus = redacted_url(settings.bus_url) if settings.bus_url else "in-process (memory://)"
    say(f"charpente worker: {loaded.name} on {redacted_url(settings.database_url)}, bus {bus}")

    # what it does, at info, every few seconds at most
    configure_logging(settings.log_level, log_format=settings.log_format)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await run_worker(settings, loaded, stop)

    on_database(settings, main())
