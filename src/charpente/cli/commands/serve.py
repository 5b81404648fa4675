"""`charpente serve`: check the design and the database, then run the API under uvicorn.

Over TLS (`--tls-cert`, `--tls-key`) or behind a TLS-terminating proxy (`--proxy-headers`,
trusting X-Forwarded-* from CHARPENTE_TRUSTED_PROXIES only), requests are https and every
response carries Strict-Transport-Security.
"""

from __future__ import annotations

import dataclasses
import errno
import socket
from pathlib import Path
from typing import Annotated, Any

import typer
import uvicorn

from charpente.cli.commands.config import design_and_settings, on_database
from charpente.cli.commands.design import DesignArgument, DesignOption, chosen_design
from charpente.cli.commands.observe import check_metrics_port, start_metrics
from charpente.cli.commands.output import fail, reports_errors, say
from charpente.design.model import Design
from charpente.runtime.logcontext import uvicorn_log_config
from charpente.settings import MAX_DRAIN_SECONDS, Settings, export_to_process, redacted_url
from charpente.wiring import (
    BEHIND_MESSAGE,
    apply_database_migration,
    check_drivers,
    check_worker_bus,
    field_cipher,
    is_database_current,
    load_configured_hooks,
)

__all__ = ["FACTORY", "RELOAD_FACTORIES", "serve"]

FACTORY = "charpente.wiring:app_from_env"
RELOAD_FACTORIES = {  # under --reload, an edited design that cannot be served answers 503
    False: "charpente.wiring:app_for_reload",
    True: "charpente.wiring:app_for_reload_migrating",  # --migrate: safe steps applied
}
SHUTDOWN_GRACE = 10  # seconds open requests (live streams) get to end when the server stops

_PEM: dict[str, Any] = {"exists": True, "dir_okay": False, "readable": True, "show_default": False}


@reports_errors
def serve(  # noqa: PLR0913 (a command's options are its parameters)
    design: DesignArgument = None,
    design_option: DesignOption = None,
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
    tls_cert: Annotated[
        Path | None,
        typer.Option(
            "--tls-cert",
            help="Serve HTTPS: the certificate chain (PEM).",
            **_PEM,
        ),
    ] = None,
    tls_key: Annotated[
        Path | None,
        typer.Option("--tls-key", help="Serve HTTPS: the private key (PEM).", **_PEM),
    ] = None,
    proxy_headers: Annotated[
        bool,
        typer.Option(
            "--proxy-headers",
            help="Behind a proxy: trust X-Forwarded-Proto and -For from "
            "CHARPENTE_TRUSTED_PROXIES (so HSTS is sent when the proxy terminates TLS).",
        ),
    ] = False,
    drain_seconds: Annotated[
        float | None,
        typer.Option(
            "--drain-seconds",
            min=0,
            max=MAX_DRAIN_SECONDS,
            help="After SIGTERM: seconds to keep serving, not ready (/readyz 503), before "
            "stopping [default: CHARPENTE_DRAIN_SECONDS, 5; 0 with --reload].",
            show_default=False,
        ),
    ] = None,
    metrics_port: Annotated[
        int | None,
        typer.Option(
            "--metrics-port",
            min=0,
            max=65535,
            help="Serve /metrics (Prometheus) on this port, apart from the API.",
            show_default=False,
        ),
    ] = None,
    metrics_host: Annotated[
        str, typer.Option("--metrics-host", help="The address /metrics listens on.")
    ] = "127.0.0.1",
    log_format: Annotated[
        str | None,
        typer.Option(
            "--log-format",
            help="text, or json: one JSON object per line (default CHARPENTE_LOG_FORMAT).",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Serve the design's REST API (docs at /docs) until Ctrl-C or SIGTERM.

    On SIGTERM it drains: /readyz answers 503 at once, it keeps serving --drain-seconds
    (each answer with Connection: close), ends every live stream with a last event, lets
    the requests in flight finish, and exits 0."""
    chosen = chosen_design(design, design_option)
    loaded, settings = design_and_settings(chosen, log_format=log_format)
    check_metrics_port(metrics_port, enabled=settings.metrics)
    if drain_seconds is not None or reload:
        settings = dataclasses.replace(settings, drain_seconds=drain_seconds or 0.0)
    tls = _tls_options(tls_cert, tls_key)
    proxies = _proxy_options(settings, proxy_headers)
    load_configured_hooks(settings, loaded)  # fail here, once, rather than in each worker
    field_cipher(settings, loaded)  # encrypted fields need their keys: say so before starting
    check_drivers(settings, loaded)
    check_worker_bus(settings)
    _refuse_unshared_cache(settings, loaded, workers)
    _check_port(host, port)
    if migrate:
        _migrate_safely(settings, loaded)
    if not on_database(settings, is_database_current(settings, loaded)):
        raise fail(BEHIND_MESSAGE)
    _announce(settings, loaded, host, port, https=bool(tls))
    export_to_process(settings)  # the workers build the app from these (the factory)
    start_metrics(
        metrics_host, metrics_port, several=workers > 1 or reload, enabled=settings.metrics
    )
    uvicorn.run(
        _factory(reload=reload, migrate=migrate),
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
        # Live change streams never end by themselves: at shutdown they get this long, then
        # are cancelled (their clients resume elsewhere with Last-Event-ID).
        timeout_graceful_shutdown=SHUTDOWN_GRACE,
        **proxies,
        **tls,
        **uvicorn_log_config(settings.log_format),
    )


CANNOT_START = 3  # the exit code when the server cannot start (uvicorn's, too)


def _check_port(host: str, port: int) -> None:
    """Stop (exit 3) before saying it serves when the address cannot be listened on."""
    if port == 0:
        return
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except OSError as exc:
        raise fail(f"cannot listen on {host}:{port}: {exc}", code=CANNOT_START) from None
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
        try:
            probe.bind(address)
        except OSError as exc:
            reason = exc.strerror or str(exc)
            in_use = exc.errno == errno.EADDRINUSE
            hint = " (another server uses it: stop it or pick another --port)" if in_use else ""
            raise fail(
                f"cannot listen on {host}:{port}: {reason}{hint}", code=CANNOT_START
            ) from None


def _factory(*, reload: bool, migrate: bool) -> str:
    """The ASGI factory uvicorn imports in each server process."""
    return RELOAD_FACTORIES[migrate] if reload else FACTORY


def _tls_options(cert: Path | None, key: Path | None) -> dict[str, Any]:
    """uvicorn's TLS options: both files, or neither."""
    if (cert is None) != (key is None):
        raise fail("--tls-cert and --tls-key go together: give both, or neither", code=2)
    if cert is None or key is None:
        return {}
    return {"ssl_certfile": str(cert), "ssl_keyfile": str(key)}


def _proxy_options(settings: Settings, proxy_headers: bool) -> dict[str, Any]:
    """uvicorn's proxy options: X-Forwarded-* only from the trusted proxies."""
    if not proxy_headers:
        return {"proxy_headers": False}
    if not settings.trusted_proxies:
        raise fail(
            "--proxy-headers needs CHARPENTE_TRUSTED_PROXIES: the addresses (or networks) of "
            "the proxies whose X-Forwarded-* headers to trust",
            code=2,
        )
    return {"proxy_headers": True, "forwarded_allow_ips": settings.trusted_proxies}


def _migrate_safely(settings: Settings, design: Design) -> None:
    applied = on_database(settings, apply_database_migration(settings, design, only_safe=True))
    if not applied.is_empty:
        count = len(applied.steps)
        say(f"migrated: applied {count} safe step{'s' if count != 1 else ''}")


def _announce(settings: Settings, design: Design, host: str, port: int, *, https: bool) -> None:
    shown = f"[{host}]" if ":" in host else host
    base = f"{'https' if https else 'http'}://{shown}:{port}"
    count = len(design.resources)
    say(f"charpente: serving {design.name!r} ({count} resources) at {base}")
    say(f"  docs:     {base}/docs   spec: {base}/openapi.json")
    say(f"  design:   {settings.design_label}")
    say(f"  database: {redacted_url(settings.database_url)}")


def _refuse_unshared_cache(settings: Settings, design: Design, workers: int) -> None:
    """An in-process response cache only sees the writes of its own process."""
    cached = any(r.cache is not None for r in design.resources.values())
    several = workers > 1 or settings.worker == "separate"
    if cached and several and settings.redis_url is None:
        raise fail(
            "the design caches responses, and with several processes (--workers, or "
            "CHARPENTE_WORKER=separate) each would miss the others' writes: "
            "set CHARPENTE_REDIS_URL to share the cache"
        )
