"""`charpente serve`: check the design and the database, then run the API under uvicorn."""

from __future__ import annotations

from typing import Annotated

import typer
import uvicorn

from charpente.cli.commands.config import design_and_settings, on_database
from charpente.cli.commands.design import DesignOption
from charpente.cli.commands.output import fail, reports_errors, say
from charpente.design.model import Design
from charpente.settings import Settings, export_to_process, redacted_url
from charpente.wiring import (
    BEHIND_MESSAGE,
    apply_database_migration,
    is_database_current,
    load_configured_hooks,
)

__all__ = ["FACTORY", "serve"]

FACTORY = "charpente.wiring:app_from_env"


@reports_errors
def serve(
    design: DesignOption = None,
    host: Annotated[str, typer.Option(help="The address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="The TCP port.")] = 8000,
    workers: Annotated[
        int, typer.Option(min=1, max=256, help="Server processes (each with its own pool).")
    ] = 1,
    migrate: Annotated[
        bool,
        typer.Option("--migrate", help="First apply the migration plan, when every step is safe."),
    ] = False,
    reload: Annotated[
        bool,
        typer.Option("--reload", help="Restart when a .py or .yaml file changes (development)."),
    ] = False,
) -> None:
    """Serve the design's REST API (docs at /docs) until Ctrl-C or SIGTERM."""
    loaded, settings = design_and_settings(design)
    load_configured_hooks(settings, loaded)  # fail here, once, rather than in each worker
    if migrate:
        _migrate_safely(settings, loaded)
    if not on_database(settings, is_database_current(settings, loaded)):
        raise fail(BEHIND_MESSAGE)
    _announce(settings, loaded, host, port)
    export_to_process(settings)  # the workers build the app from these (the factory)
    uvicorn.run(
        FACTORY,
        factory=True,
        host=host,
        port=port,
        workers=workers if not reload else None,
        reload=reload,
        reload_includes=["*.py", "*.yaml"] if reload else None,
        loop="uvloop",
        http="httptools",
        access_log=False,
        log_level=settings.log_level,
        server_header=False,
        proxy_headers=False,
    )


def _migrate_safely(settings: Settings, design: Design) -> None:
    applied = on_database(settings, apply_database_migration(settings, design, only_safe=True))
    if not applied.is_empty:
        count = len(applied.steps)
        say(f"migrated: applied {count} safe step{'s' if count != 1 else ''}")


def _announce(settings: Settings, design: Design, host: str, port: int) -> None:
    shown = f"[{host}]" if ":" in host else host
    base = f"http://{shown}:{port}"
    count = len(design.resources)
    say(f"charpente: serving {design.name!r} ({count} resources) at {base}")
    say(f"  docs:     {base}/docs   spec: {base}/openapi.json")
    say(f"  design:   {settings.design_label}")
    say(f"  database: {redacted_url(settings.database_url)}")
