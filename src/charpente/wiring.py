"""The composition root: settings → engine → SqlDatabase → Service (+ hooks) → ASGI app.

The only module that names concrete backends. `app_from_env` is the factory uvicorn imports
(`uvicorn --factory charpente.wiring:app_from_env`); the CLI uses the rest.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import dataclasses
import datetime
import gc
import importlib
import importlib.util
import logging
import sys
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from contextlib import asynccontextmanager, suppress
from pathlib import Path
from types import ModuleType
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.applications import Starlette
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from charpente import __version__
from charpente.bus import bus_from_url
from charpente.design.flags import hook_flag_problems, hook_flags_read, rules_reading
from charpente.design.model import Design
from charpente.errors import ConfigError, DesignError, MigrationError, Problem
from charpente.http.app import build_app
from charpente.http.clientip import parse_trusted_proxies
from charpente.http.drain import ClosingMiddleware
from charpente.http.oauth import oauth_routes
from charpente.http.shapes import shape_routes
from charpente.http.standby import standby_app
from charpente.http.webhooks import webhook_routes
from charpente.loader import load_design, load_design_text
from charpente.outbound.mail import LogMailer, smtp_target
from charpente.outbound.sender import HttpOutbound
from charpente.runtime import metrics
from charpente.runtime.activity import Activity, ActivityLog
from charpente.runtime.advice import IndexPlanner, IndexVerifier as IndexVerifierPort
from charpente.runtime.auth import Accounts
from charpente.runtime.caching import Cache, CacheRepair, MemoryCache, ResponseCache
from charpente.runtime.changes import ChangeFeed
from charpente.runtime.clock import SystemClock
from charpente.runtime.encryption import (
    AesFieldCipher,
    FieldCipher,
    describe_fields,
    encrypted_fields,
)
from charpente.runtime.events import Message as BusMessage, event_source
from charpente.runtime.flag_control import FlagControl, FlagSync
from charpente.runtime.flags import FlagBoard
from charpente.runtime.health import DEGRADED, DOWN, OK, Component, DesignWatch, Health, timed
from charpente.runtime.hooks import Hooks, load_hooks
from charpente.runtime.jobs import JobRunner, RunnerOptions
from charpente.runtime.lifecycle import Drain
from charpente.runtime.logcontext import JsonFormatter, TextFormatter
from charpente.runtime.mail import (
    MAIL_JOB,
    MailTemplates,
    Postman,
    register_mail_job,
    template_folder,
)
from charpente.runtime.oauth import OAuthClient, Provider
from charpente.runtime.ports import Bus, BusError, Clock, Database, JobStore, Mailer, Transaction
from charpente.runtime.ratelimit import FallbackLimiter, Limiter, MemoryLimiter
from charpente.runtime.relay import Relay
from charpente.runtime.secrets import Sealer
from charpente.runtime.service import Service
from charpente.runtime.shapes import MeasuredDatabase, ShapeFlusher, ShapeLog, ShapeReport
from charpente.runtime.webhooks import Webhooks
from charpente.runtime.worker import Loops
from charpente.settings import Settings, environment_secret, settings_from_process
from charpente.sql.advisor import planner_for
from charpente.sql.authstore import SqlAuthStore
from charpente.sql.database import SqlDatabase
from charpente.sql.drift import missing_from_database
from charpente.sql.engine import create_engine, missing_sqlite_file
from charpente.sql.flagstore import SqlFlagStore
from charpente.sql.history import archive_events
from charpente.sql.jobstore import SqlJobStore
from charpente.sql.migrate import (
    MigrationPlan,
    apply_migration,
    database_is_current,
    plan_migration,
)
from charpente.sql.outbox import SqlOutbox
from charpente.sql.presence import Presence
from charpente.sql.renames import Rename, Started, complete_migration, start_migration
from charpente.sql.sealed import (
    Progress,
    Resealed,
    encryption_steps,
    refuse_encryption_steps,
    reseal_values,
    with_encryption_steps,
)
from charpente.sql.shapestore import SqlShapeStore
from charpente.sql.verify import IndexVerifier
from charpente.sql.webhookstore import SqlWebhookStore
from charpente.sql.writelog import SqlWriteLog
from charpente.templates import template_names, template_text

__all__ = [
    "BEHIND_MESSAGE",
    "AdviceTools",
    "MigrationPlan",
    "app_for_reload",
    "app_for_reload_migrating",
    "app_from_env",
    "apply_database_migration",
    "build_application",
    "build_response_cache",
    "build_shape_log",
    "build_webhooks",
    "check_drivers",
    "check_worker_bus",
    "complete_database_migration",
    "configure_logging",
    "field_cipher",
    "is_database_current",
    "load_configured_design",
    "load_configured_hooks",
    "load_design_hooks",
    "open_accounts",
    "open_engine",
    "open_index_planner",
    "open_job_store",
    "open_shape_store",
    "open_webhooks",
    "plan_database_migration",
    "reseal_encrypted_values",
    "start_database_migration",
]

SEPARATE_NEEDS_BROKER = (
    "CHARPENTE_WORKER=separate needs a broker: set CHARPENTE_BUS_URL (amqp://, nats:// or "
    "redis://); with the in-process bus the worker's events would never reach any server"
)

BEHIND_MESSAGE = (
    "the database is behind the design: "
    "run `charpente migrate apply` or `charpente serve --migrate`"
)

logger = logging.getLogger("charpente")


def app_from_env() -> Starlette:
    """The ASGI app configured by CHARPENTE_* variables (an ASGI factory for uvicorn).
    Raises ConfigError when no design is named and none is at ./design.yaml."""
    settings = settings_from_process()
    if settings.design_missing:
        raise ConfigError(
            "no design.yaml here and CHARPENTE_DESIGN is not set: write one with "
            "`charpente init`, or name it (CHARPENTE_DESIGN=path, or template:social)"
        )
    _set_up_process(settings)
    design = load_configured_design(settings)
    start_tracing(settings, design)
    app = build_application(settings, design)
    _settle_garbage_collector()
    return app


def app_for_reload() -> Starlette:
    """The ASGI factory of `serve --reload`: a design edit restarts the process, and the
    new design is served, or, when it cannot be (errors, the database behind it), a
    standby app answers 503 with the reason until the next save."""
    return _reloaded_app(migrate=False)


def app_for_reload_migrating() -> Starlette:
    """`serve --migrate --reload`: as app_for_reload, applying the safe steps of the
    edited design first (steps that are not safe: 503 naming them, see migrate apply)."""
    return _reloaded_app(migrate=True)


def _reloaded_app(*, migrate: bool) -> Starlette:
    settings = settings_from_process()
    _set_up_process(settings)
    try:
        design = load_configured_design(settings)
        start_tracing(settings, design)
        check_worker_bus(settings)
        load_configured_hooks(settings, design)
        if migrate:
            applied = _off_loop(apply_database_migration(settings, design, only_safe=True))
            if not applied.is_empty:
                count = len(applied.steps)
                logger.info("migrated: applied %d safe step%s", count, "s" if count != 1 else "")
        if not _off_loop(is_database_current(settings, design)):
            raise MigrationError(BEHIND_MESSAGE)
        return build_application(settings, design)
    except Exception as exc:  # whatever it is: say it and stay up, never a hang
        reason = _reason(exc)
        logger.error("the design cannot be served: %s; fix it and save: the server reloads", reason)
        return standby_app(reason)


def _set_up_process(settings: Settings) -> None:
    """What each server process sets up before its app: the log format, shared metrics."""
    configure_logging(
        settings.log_level, access_log=settings.access_log, log_format=settings.log_format
    )
    metrics.record(settings.metrics)
    metrics.share_directory(settings.metrics_directory)
    if settings.metrics_directory is not None:
        atexit.register(metrics.process_ended)


def _off_loop(work: Coroutine[Any, Any, Any]) -> Any:
    """Run `work` to its end on a loop of its own (uvicorn calls the factory inside its
    running loop, where asyncio.run cannot be called)."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, work).result()


def _reason(exc: Exception) -> str:
    """One line for what stops a design from being served."""
    if isinstance(exc, DesignError):
        errors = [p for p in exc.problems if p.severity == "error"] or exc.problems
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        return f"{errors[0]}{more}" if errors else "the design has errors"
    if isinstance(exc, ConfigError | MigrationError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


def _settle_garbage_collector() -> None:
    """Move what lives as long as the process (modules, the design, prebuilt statements)
    out of the collector's way: full collections then scan only what requests create, and
    stop pausing the server for tens of milliseconds."""
    gc.collect()
    gc.freeze()


def build_application(settings: Settings, design: Design | None = None) -> Starlette:
    """The whole app: refuses to start when the database is behind, disposes the engine at exit."""
    design = design if design is not None else load_configured_design(settings)
    check_worker_bus(settings)
    hooks = with_mail_job(settings, load_configured_hooks(settings, design))
    cipher = field_cipher(settings, design)
    engine = _engine(settings)
    database = SqlDatabase(engine, design)
    shape_log = build_shape_log(settings, database)
    service = Service(design, shape_log.database, hooks=hooks, cipher=cipher)
    metrics.set_build_info(__version__, design.name)
    response_cache, close_cache = build_response_cache(settings, design)
    if response_cache is not None:
        service.on_write.append(response_cache.written)
    repair_start, repair_stop = _cache_repair(response_cache, database, service.clock)
    accounts = build_accounts(settings, design, service, database)
    limiter, close_limiter = _limiter(settings, design)
    accounts.limiter = limiter  # the per-email limits of the account flows, shared too
    oauth = OAuthClient(login_providers(design))
    background = build_background(settings, design, service, database)
    # live changes come from the bus, so the bus runs even when a separate worker relays
    feed = ChangeFeed(design, database, background.bus)
    start = background.start if settings.worker == "embedded" else background.start_bus
    flags, flag_sync = build_flags(design, service, database, background.bus, feed)
    prefix = f"/v{design.api_version}"
    health = build_health(engine, design, database, background, limiter, response_cache)
    drain = Drain(settings.drain_seconds, on_start=[health.start_draining], on_end=[feed.drain])
    presence = Presence(engine, design)  # `migrate complete` waits for old designs to stop
    app = build_app(
        service,
        design,
        accounts=accounts,
        limiter=limiter,
        trusted_proxies=parse_trusted_proxies(settings.trusted_proxies),
        max_body_bytes=settings.max_body_bytes,
        extra_routes=[
            *oauth_routes(accounts, oauth, design, prefix, settings.public_url),
            *webhook_routes(background.webhooks, prefix),
            *shape_routes(shape_log.report, prefix),
        ],
        changes=feed,
        flags=flags,
        on_startup=[
            accounts.start,
            start,
            feed.start,
            flag_sync.start,
            drain.install,
            mail_warning(settings),
            shape_log.start,
            presence.start,
            repair_start,
        ],
        on_shutdown=[
            drain.uninstall,
            flag_sync.stop,
            presence.stop,
            feed.stop,
            accounts.stop,
            background.stop,
            oauth.aclose,
            close_limiter,
            shape_log.stop,
            repair_stop,
            close_cache,
            database.close,
        ],
        readiness=background.readiness,
        health=health,
        response_cache=response_cache,
    )
    app.state.health, app.state.drain = health, drain
    app.add_middleware(_StartupGuard, startup=_startup_check(engine, design), engine=engine)
    app.add_middleware(ClosingMiddleware, drain=drain)
    return app


def build_flags(
    design: Design,
    service: Service,
    database: SqlDatabase,
    bus: Bus,
    feed: ChangeFeed | None = None,
) -> tuple[FlagControl | None, FlagSync | _NoSync]:
    """The flag admin over the database, following the bus, re-evaluating `feed`'s live
    streams on a change (nothing without flags)."""
    if not design.flags:
        return None, _NoSync()
    control = FlagControl(design, service.flags, SqlFlagStore(database), bus=bus)
    reading = rules_reading(design)

    async def rebind_streams(names: Sequence[str]) -> None:
        if feed is not None:
            changed = [r for r, read in reading.items() if read & set(names)]
            feed.rebind(changed, service.flags)

    control.listeners.append(rebind_streams)
    return control, FlagSync(control)


class _NoSync:
    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None


class Background:
    """The bus, and the worker's loops over it: the outbox relay (then webhooks and jobs)."""

    def __init__(
        self,
        bus: Bus,
        relay: Relay,
        loops: Loops,
        webhooks: Webhooks,
        jobs: JobRunner | None = None,
    ) -> None:
        self.bus, self.relay, self.loops = bus, relay, loops
        self.webhooks = webhooks
        self.jobs = jobs

    def activity(self) -> Activity:
        """What this process's loops have done since it started."""
        jobs = self.jobs
        return Activity(
            relayed=self.relay.published,
            sent=self.webhooks.sent,
            send_failed=self.webhooks.failed,
            jobs_done=jobs.done if jobs is not None else 0,
            jobs_failed=jobs.failed if jobs is not None else 0,
        )

    async def start(self) -> None:
        """Connect the bus and start the loops; a bus that cannot be reached yet is retried
        by the relay (writes keep working: their events wait in the outbox)."""
        await self.start_bus()
        await self.loops.start()

    async def start_bus(self) -> None:
        """Connect the bus only (a server whose events a separate worker relays)."""
        try:
            await self.bus.start()
        except BusError as exc:
            logger.warning("the bus %s is not reachable yet (%s): retrying", self.bus.name, exc)

    async def stop(self) -> None:
        await self.loops.stop()
        await self.bus.close()
        await self.webhooks.outbound.close()

    async def readiness(self) -> dict[str, object]:
        """What /readyz shows of the relay: lag, waiting messages, the bus and its breaker."""
        status = await self.relay.status()
        return {"outbox": dataclasses.asdict(status)}


def build_background(
    settings: Settings, design: Design, service: Service, database: SqlDatabase
) -> Background:
    """The bus from CHARPENTE_BUS_URL and the loops `charpente worker` runs (and `serve`,
    with CHARPENTE_WORKER=embedded)."""
    bus = bus_from_url(settings.bus_url, name=design.name)
    webhooks = build_webhooks(settings, design, database, service.clock)

    async def fan_out(tx: Transaction, messages: Sequence[BusMessage]) -> None:
        await webhooks.fan_out(tx, messages)

    relay = Relay(
        SqlOutbox(database, event_source(design.name)), bus, service.clock, fan_out=fan_out
    )
    jobs = JobRunner(service, SqlJobStore(database), RunnerOptions())
    loops = Loops({"relay": relay.run, "webhooks": webhooks.run, "jobs": jobs.run})
    return Background(bus, relay, loops, webhooks, jobs)


def build_webhooks(
    settings: Settings, design: Design, database: SqlDatabase, clock: Clock | None = None
) -> Webhooks:
    """Webhook endpoints and deliveries over the database; URLs and secrets of the design's
    webhooks from the environment, run-time secrets sealed with CHARPENTE_SECRET_KEYS."""
    sealer = None if settings.secret_keys is None else Sealer.from_env_value(settings.secret_keys)
    return Webhooks(
        design,
        SqlWebhookStore(database),
        HttpOutbound(design.outbound_allow),
        environment=environment_secret,
        sealer=sealer,
        clock=clock,
    )


async def run_worker(settings: Settings, design: Design, stop: asyncio.Event) -> None:
    """`charpente worker`: the relay (then webhooks and jobs) until `stop` is set."""
    check_worker_bus(settings)
    hooks = with_mail_job(settings, load_configured_hooks(settings, design))
    stop_tracing = start_tracing(settings, design)
    engine = _engine(settings)
    database = SqlDatabase(engine, design)
    try:
        if not await _is_current(engine, design):
            raise MigrationError(BEHIND_MESSAGE)
        service = Service(design, database, hooks=hooks, cipher=field_cipher(settings, design))
        response_cache, close_cache = build_response_cache(settings, design)
        if response_cache is not None:  # the jobs' writes move the servers' cache too
            service.on_write.append(response_cache.written)
        metrics.set_build_info(__version__, design.name)
        background = build_background(settings, design, service, database)
        await background.start()
        _, flag_sync = build_flags(design, service, database, background.bus)
        await flag_sync.start()  # jobs' writes see the flags as admins set them
        logger.info("worker: relaying to the bus %s", background.bus.name)
        activity = ActivityLog(background.activity)
        try:
            await activity.run(stop)
        finally:
            await flag_sync.stop()
            await background.stop()
            activity.stopped(await _waiting(background))
            await close_cache()
    finally:
        await database.close()
        stop_tracing()


async def _waiting(background: Background) -> int | None:
    """How many events wait in the outbox (None when the database cannot say)."""
    try:
        return (await background.relay.status()).pending
    except Exception:  # the database went away: the summary says the rest
        return None


def build_accounts(
    settings: Settings, design: Design, service: Service, database: SqlDatabase
) -> Accounts:
    """Accounts and tokens over the database's own auth tables."""
    sealer = None if settings.secret_keys is None else Sealer.from_env_value(settings.secret_keys)
    if sealer is None:
        logger.info("CHARPENTE_SECRET_KEYS is not set: signing keys are stored unsealed")
    return Accounts(
        design,
        service,
        SqlAuthStore(database),
        clock=service.clock,
        sealer=sealer,
        issuer=settings.issuer,
        postman=build_postman(settings, design, service),
    )


def build_mailer(settings: Settings) -> Mailer:
    """SMTP when CHARPENTE_SMTP_URL is set (the `mail` extra), else the log mailer."""
    if settings.smtp_url is None:
        return LogMailer(settings.mail_dir, settings.mail_from)
    try:
        smtp = importlib.import_module("charpente.outbound.smtp")
    except ModuleNotFoundError as exc:
        if exc.name is None or exc.name.split(".")[0] != "aiosmtplib":
            raise
        raise ConfigError("CHARPENTE_SMTP_URL is set: pip install 'charpente[mail]'") from None
    assert settings.mail_from is not None  # settings require it with an SMTP URL
    mailer: Mailer = smtp.SmtpMailer(smtp_target(settings.smtp_url), settings.mail_from)
    return mailer


def with_mail_job(settings: Settings, hooks: Hooks | None) -> Hooks:
    """The design's hooks (or none) with the job that sends the engine's email."""
    hooks = hooks or Hooks()
    if MAIL_JOB not in hooks.jobs:
        register_mail_job(hooks, build_mailer(settings), _sealer(settings))
    return hooks


def mail_warning(settings: Settings) -> Callable[[], Coroutine[Any, Any, None]]:
    """What the server says loudly as it starts when its email only goes to the log."""

    async def warn() -> None:
        if settings.smtp_url is None:
            logger.warning(
                "CHARPENTE_SMTP_URL is not set: email (verification, password reset) is NOT "
                "sent to anyone, it goes to the log%s",
                "" if settings.mail_dir is None else f" and to {settings.mail_dir}",
            )

    return warn


def build_postman(settings: Settings, design: Design, service: Service) -> Postman:
    """What renders and queues the engine's email: the shipped templates, with the design's
    own (`auth.mail_templates`, a folder beside the design file) on top."""
    overrides: dict[str, str] = {}
    if design.auth.mail_templates is not None:
        base = settings.design_path.parent if settings.design_path else Path(design.source).parent
        folder = base / design.auth.mail_templates
        if not folder.is_dir():
            raise ConfigError(f"auth.mail_templates: {folder} is not a folder")
        try:
            overrides = template_folder(folder)
        except (ValueError, OSError) as error:
            raise ConfigError(f"auth.mail_templates: {error}") from None
    try:
        templates = MailTemplates(overrides)
    except ValueError as error:
        raise ConfigError(f"auth.mail_templates: {error}") from None
    return Postman(
        service,
        templates,
        app_name=design.auth.app_name or design.name,
        app_url=design.auth.app_url,
        sealer=_sealer(settings),
    )


def _sealer(settings: Settings) -> Sealer | None:
    return None if settings.secret_keys is None else Sealer.from_env_value(settings.secret_keys)


def login_providers(design: Design) -> list[Provider]:
    """The design's OAuth providers with their client ids and secrets from the environment.
    Raises ConfigError naming the variable that is missing."""
    providers = []
    for declared in design.auth.providers:
        values = {}
        for env in (declared.client_id_env, declared.client_secret_env):
            value = environment_secret(env)
            if value is None:
                raise ConfigError(f"login provider {declared.name!r} needs the variable {env}")
            values[env] = value
        urls: dict[str, Any] = {}
        if declared.issuer is not None:
            urls["issuer"] = declared.issuer
        if declared.base_url is not None:
            urls["authorize_url"] = f"{declared.base_url}/login/oauth/authorize"
            urls["token_url"] = f"{declared.base_url}/login/oauth/access_token"
        if declared.api_url is not None:
            urls["api_url"] = declared.api_url
        try:
            providers.append(
                Provider(
                    declared.name,
                    declared.kind,  # type: ignore[arg-type]  # checked by design.auth
                    values[declared.client_id_env],
                    values[declared.client_secret_env],
                    **urls,
                )
            )
        except ValueError as error:
            raise ConfigError(str(error)) from None
    return providers


def field_cipher(settings: Settings, design: Design) -> FieldCipher | None:
    """What seals the design's encrypted fields: CHARPENTE_SECRET_KEYS. Raises ConfigError,
    in one sentence, when the design encrypts fields and no key is set."""
    if settings.secret_keys is None:
        sealed = encrypted_fields(design)
        if sealed:
            raise ConfigError(
                f"the design encrypts {describe_fields(sealed)}: set CHARPENTE_SECRET_KEYS "
                "to the keys that seal them (`kid:base64key`, 32 bytes each)"
            )
        return None
    return AesFieldCipher(Sealer.from_env_value(settings.secret_keys))


@asynccontextmanager
async def open_accounts(settings: Settings, design: Design) -> AsyncIterator[Accounts]:
    """Accounts over the configured database, signing keys loaded, for commands that run
    without a server. Raises MigrationError when the database is behind the design."""
    cipher = field_cipher(settings, design)
    engine = _engine(settings)
    database = SqlDatabase(engine, design)
    try:
        if not await _is_current(engine, design):
            raise MigrationError(BEHIND_MESSAGE)
        service = Service(design, database, hooks=with_mail_job(settings, None), cipher=cipher)
        accounts = build_accounts(settings, design, service, database)
        await accounts.reload_keys()
        yield accounts
    finally:
        await database.close()


@asynccontextmanager
async def open_webhooks(settings: Settings, design: Design) -> AsyncIterator[Webhooks]:
    """Webhooks over the configured database, for commands that run without a server.
    Raises MigrationError when the database is behind the design."""
    engine = _engine(settings)
    database = SqlDatabase(engine, design)
    try:
        if not await _is_current(engine, design):
            raise MigrationError(BEHIND_MESSAGE)
        webhooks = build_webhooks(settings, design, database)
        try:
            yield webhooks
        finally:
            await webhooks.outbound.close()
    finally:
        await database.close()


@asynccontextmanager
async def open_job_store(settings: Settings, design: Design) -> AsyncIterator[JobStore]:
    """The configured database's job queue, for commands that run without a server. Raises
    MigrationError when the database is behind the design."""
    engine = _engine(settings)
    database = SqlDatabase(engine, design)
    try:
        if not await _is_current(engine, design):
            raise MigrationError(BEHIND_MESSAGE)
        yield SqlJobStore(database)
    finally:
        await database.close()


async def reseal_encrypted_values(
    settings: Settings, design: Design, *, batch: int, progress: Progress | None = None
) -> Resealed:
    """Seal every encrypted value stored under an older key again under the active one."""
    cipher = field_cipher(settings, design)
    if cipher is None:
        return Resealed()
    database = SqlDatabase(_engine(settings), design)
    try:
        return await reseal_values(database, design, cipher, batch=batch, progress=progress)
    finally:
        await database.close()


def _limiter(
    settings: Settings, design: Design
) -> tuple[Limiter, Callable[[], Coroutine[Any, Any, None]]]:
    """Rate limits shared through Redis when it is configured (per process if it fails)."""
    memory = MemoryLimiter()

    async def nothing() -> None:
        return None

    if settings.redis_url is None:
        return memory, nothing
    redis_limiter_from_url = _redis_adapter().redis_limiter_from_url
    primary = redis_limiter_from_url(settings.redis_url, prefix=f"charpente:rl:{design.name}:")
    return FallbackLimiter(primary, memory), primary.close


def check_drivers(settings: Settings, design: Design) -> None:
    """Stop with the extra to install when a configured URL needs a driver that is not
    installed: once, before serving, rather than in every server process.

    (A PostgreSQL URL without asyncpg already fails where the engine is made.)"""
    bus_from_url(settings.bus_url, name=design.name)  # builds the adapter, connects nothing
    if settings.redis_url is not None:
        _redis_adapter()
    if settings.traces_exporter is not None:
        from charpente.outbound.otel import require_sdk

        require_sdk()


def start_tracing(settings: Settings, design: Design) -> Callable[[], None]:
    """Spans exported where the OTEL_* variables say, when they say so (else nothing, at no
    cost); the function that flushes and stops them."""
    if settings.traces_exporter is None:
        return _nothing
    from charpente.outbound.otel import configure_tracing

    name = settings.otel_service_name or f"charpente-{design.name}"
    return configure_tracing(settings.traces_exporter, name)


def _nothing() -> None:
    return None


def check_worker_bus(settings: Settings) -> None:
    """A separate worker talks to the servers through a broker only: refuse the in-process
    bus with it. Raises ConfigError."""
    if settings.worker == "separate" and settings.bus_url is None:
        raise ConfigError(SEPARATE_NEEDS_BROKER)


def _redis_adapter() -> ModuleType:
    try:
        return importlib.import_module("charpente.cache.redis")
    except ModuleNotFoundError as exc:
        if exc.name is None or exc.name.split(".")[0] != "redis":
            raise
        raise ConfigError("CHARPENTE_REDIS_URL is set: pip install 'charpente[redis]'") from None


def load_configured_design(settings: Settings) -> Design:
    """The design the settings name: a file, or an embedded template. Raises DesignError."""
    if settings.design_path is not None:
        return load_design(settings.design_path)
    name = settings.design_template
    if name not in template_names():
        known = ", ".join(template_names())
        raise ConfigError(f"CHARPENTE_DESIGN names no template {name!r} (templates: {known})")
    return load_design_text(template_text(name), f"template:{name}")


def load_configured_hooks(settings: Settings, design: Design) -> Hooks | None:
    """The design's hooks, a .py path being relative to the design file. Raises ConfigError."""
    if settings.design_path is not None:
        return load_design_hooks(design, settings.design_path.parent)
    return load_design_hooks(design, Path(design.source).parent)


def load_design_hooks(design: Design, base: Path) -> Hooks | None:
    """The `hooks` object of the module the design names (a .py path relative to `base`, or a
    dotted module), or None when it names none. Raises ConfigError with one clear sentence."""
    spec = design.hooks
    if spec is None:
        return None
    if spec.endswith(".py") and not (base / spec).is_file():
        raise ConfigError(f"the hooks file {spec!r} named by the design does not exist in {base}")
    try:
        hooks = load_hooks(spec, base)
    except SyntaxError as exc:
        where = f"line {exc.lineno}" if exc.lineno else "somewhere"
        raise ConfigError(
            f"the hooks module {spec!r} has a syntax error at {where}: {exc.msg}"
        ) from None
    except ImportError as exc:
        raise ConfigError(f"the hooks module {spec!r} cannot be loaded: {exc}") from None
    except Exception as exc:  # the user's module failed while it ran: say which and how
        raise ConfigError(
            f"the hooks module {spec!r} failed while loading: {type(exc).__name__}: {exc}"
        ) from None
    check_hook_flags(design, spec, base)
    return hooks


def check_hook_flags(design: Design, spec: str, base: Path) -> None:
    """Refuse hooks that read a flag the design does not declare (DesignError at each)."""
    path = _hooks_source(spec, base)
    if path is None:
        return
    problems = hook_flag_problems(path.read_text(encoding="utf-8"), str(path), design.flags)
    if problems:
        raise DesignError(problems)


def hooks_flag_problems(settings: Settings, design: Design) -> list[Problem]:
    """The undeclared flags the design's hooks module reads (its source, read, not run)."""
    if design.hooks is None:
        return []
    base = (settings.design_path or Path(design.source)).parent
    try:
        path = _hooks_source(design.hooks, base)
    except (ImportError, ValueError):
        return []  # `serve` says why the module cannot be loaded
    if path is None:
        return []
    return hook_flag_problems(path.read_text(encoding="utf-8"), str(path), design.flags)


def flags_in_use(settings: Settings, design: Design) -> set[str]:
    """The flags the design's rules and its hooks module (read, not run) read."""
    used = set().union(*rules_reading(design).values())
    if design.hooks is not None:
        base = (settings.design_path or Path(design.source)).parent
        with suppress(ImportError, ValueError, OSError):
            path = _hooks_source(design.hooks, base)
            if path is not None:
                used |= hook_flags_read(path.read_text(encoding="utf-8"))
    return used


def _hooks_source(spec: str, base: Path) -> Path | None:
    """The file of a hooks module (a .py path relative to `base`, or a dotted module)."""
    found = importlib.util.find_spec(spec) if not spec.endswith(".py") else None
    path = base / spec if found is None else Path(found.origin or "")
    return path if path.is_file() else None


@asynccontextmanager
async def open_flags(settings: Settings, design: Design) -> AsyncIterator[FlagControl]:
    """The flags over the configured database and bus, for commands that run without a
    server (a change is announced on the bus). Raises MigrationError when behind."""
    engine = _engine(settings)
    database = SqlDatabase(engine, design)
    bus = bus_from_url(settings.bus_url, name=design.name)
    try:
        if not await _is_current(engine, design):
            raise MigrationError(BEHIND_MESSAGE)
        try:
            await bus.start()
        except Exception as exc:  # a broker's own errors too: servers catch up by reloading
            logger.warning(
                "the bus %s is not reachable (%s): servers reload within 10 s", bus.name, exc
            )
        control = FlagControl(design, FlagBoard(design.flags), SqlFlagStore(database), bus=bus)
        await control.reload()
        yield control
    finally:
        with suppress(Exception):
            await bus.close()
        await database.close()


async def archive_history(
    settings: Settings,
    design: Design,
    before: datetime.datetime,
    write: Callable[[list[bytes]], None],
) -> int:
    """`charpente history archive`: events older than `before` to `write`, then deleted."""
    database = SqlDatabase(_engine(settings), design)
    try:
        return await archive_events(database, before, write)
    finally:
        await database.close()


@asynccontextmanager
async def open_engine(settings: Settings) -> AsyncIterator[AsyncEngine]:
    """An engine for the configured database, disposed on exit."""
    engine = _engine(settings)
    try:
        yield engine
    finally:
        await engine.dispose()


async def plan_database_migration(settings: Settings, design: Design) -> MigrationPlan:
    """What it takes to bring the configured database up to `design` (a SQLite file that
    does not exist is planned as an empty database, and not created)."""
    if missing_sqlite_file(settings.database_url):
        settings = dataclasses.replace(settings, database_url="sqlite+aiosqlite://")
    async with open_engine(settings) as engine:
        return await with_encryption_steps(engine, design, await plan_migration(engine, design))


async def apply_database_migration(
    settings: Settings, design: Design, *, allow_destructive: bool = False, only_safe: bool = False
) -> MigrationPlan:
    """Bring the configured database up to `design`. Raises MigrationError."""
    async with open_engine(settings) as engine:
        refuse_encryption_steps(await encryption_steps(engine, design), only_safe=only_safe)
        applied = await apply_migration(
            engine, design, allow_destructive=allow_destructive, only_safe=only_safe
        )
        return await with_encryption_steps(engine, design, applied)


async def is_database_current(settings: Settings, design: Design) -> bool:
    """Whether the configured database has every table and column `design` needs."""
    async with open_engine(settings) as engine:
        return await _is_current(engine, design)


async def _is_current(engine: AsyncEngine, design: Design) -> bool:
    """No migration step left, and no field whose `encrypted` changed since the last one."""
    if not await database_is_current(engine, design):
        return False
    return not await encryption_steps(engine, design)


def configure_logging(level: str, *, access_log: bool = False, log_format: str = "text") -> None:
    """One line per record on stderr for charpente's loggers (`log_format` json: one JSON
    object per line); the access log (one line per request) only when asked: it costs about
    a tenth of a small request's time."""
    root = logging.getLogger("charpente")
    root.setLevel(level.upper())
    logging.getLogger("charpente.access").setLevel(level.upper() if access_log else "WARNING")
    formatter = JsonFormatter() if log_format == "json" else TextFormatter()
    ours = [h for h in root.handlers if getattr(h, "_charpente", False)]
    if ours:
        ours[0].setFormatter(formatter)
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    handler._charpente = True  # type: ignore[attr-defined]  # marks ours: configure once
    root.addHandler(handler)


def _engine(settings: Settings) -> AsyncEngine:
    return create_engine(
        settings.database_url, schema=settings.database_schema, pool_size=settings.pool_size
    )


def _startup_check(engine: AsyncEngine, design: Design) -> Callable[[], Coroutine[Any, Any, bool]]:
    async def check() -> bool:
        try:
            if await _is_current(engine, design):
                return True
        except Exception as exc:  # unreachable, refused, bad credentials: one line, no traceback
            logger.error("the database cannot be used: %s: %s", type(exc).__name__, exc)
            return False
        logger.error(BEHIND_MESSAGE)
        return False

    return check


class _StartupGuard:
    """Fails the ASGI startup when `startup` says no — after one log line, without the
    traceback a raising lifespan would print — and disposes the engine then."""

    def __init__(
        self,
        app: ASGIApp,
        startup: Callable[[], Coroutine[Any, Any, bool]],
        engine: AsyncEngine,
    ) -> None:
        self.app = app
        self.startup = startup
        self.engine = engine

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "lifespan":
            await self.app(scope, receive, send)
            return
        first = await receive()
        if first["type"] == "lifespan.startup" and not await self.startup():
            await self.engine.dispose()
            await send({"type": "lifespan.startup.failed", "message": ""})
            return
        await self.app(scope, _replay(first, receive), send)


def _replay(first: Message, receive: Receive) -> Receive:
    pending = [first]

    async def replaying_receive() -> Message:
        return pending.pop() if pending else await receive()

    return replaying_receive


def build_health(
    engine: AsyncEngine,
    design: Design,
    database: SqlDatabase,
    background: Background,
    limiter: Limiter,
    response_cache: ResponseCache | None = None,
) -> Health:
    """What /readyz checks: the database and the design applied to it (required), the
    pool, the outbox relay, the bus's breaker, Redis and the response cache (shown only)."""
    watch = DesignWatch(lambda: missing_from_database(engine, design), lambda: database.mismatches)

    async def database_check() -> Component:
        try:
            ping_ms = await timed(database.ping)
        except Exception:  # unreachable: the reason is enough, the log has the rest
            return Component("database", DOWN, reason="the database is not reachable")
        return Component("database", OK, {"ping_ms": ping_ms})

    async def pool_check() -> Component:
        in_use, size = database.pool_use()
        return Component("pool", OK, {"in_use": in_use, "size": size})

    async def outbox_check() -> Component:
        status = await background.relay.status()
        details = {"pending": status.pending, "lag_seconds": status.lag_seconds}
        return Component("outbox", OK, {**details, "published": status.published})

    async def bus_check() -> Component:
        relay = background.relay
        breaker = relay.breaker.state
        details = {"name": relay.bus.name, "breaker": breaker, "last_error": relay.last_error}
        return Component("bus", OK if breaker == "closed" else DEGRADED, details)

    checks: list[tuple[str, Callable[[], Coroutine[Any, Any, Component]], bool]] = [
        ("database", database_check, True),
        ("design", watch.check, True),
        ("pool", pool_check, False),
        ("outbox", outbox_check, False),
        ("bus", bus_check, False),
    ]
    if isinstance(limiter, FallbackLimiter):
        checks.append(("redis", _redis_check(limiter), False))
    if response_cache is not None:
        checks.append(("cache", _cache_check(response_cache), False))
    return Health(checks)


def _cache_check(cache: ResponseCache) -> Callable[[], Coroutine[Any, Any, Component]]:
    async def check() -> Component:
        status = cache.status()  # degraded while its store fails: answers bypass it meanwhile
        state = DEGRADED if status["state"] == "degraded" else OK
        return Component("cache", state, {"bypassed": status["bypassed"]})

    return check


def _redis_check(limiter: FallbackLimiter) -> Callable[[], Coroutine[Any, Any, Component]]:
    async def check() -> Component:
        ping = getattr(limiter.primary, "ping", None)
        try:
            ping_ms = None if ping is None else await timed(ping)
        except Exception:  # down: rate limits are decided per process meanwhile
            return Component("redis", DEGRADED, {"fallback": True}, "Redis is not reachable")
        state = DEGRADED if limiter.degraded else OK
        return Component("redis", state, {"ping_ms": ping_ms, "fallback": limiter.degraded})

    return check


@dataclasses.dataclass(frozen=True)
class ShapeLogParts:
    """The shape log of a server: the Database the service reads through (counting each
    read, or the plain one when CHARPENTE_SHAPE_LOG=false), the admin report, start/stop."""

    database: Database
    report: ShapeReport
    flusher: ShapeFlusher | None

    async def start(self) -> None:
        if self.flusher is not None:
            await self.flusher.start()

    async def stop(self) -> None:
        if self.flusher is not None:
            await self.flusher.stop()


def build_shape_log(settings: Settings, database: SqlDatabase) -> ShapeLogParts:
    """Reads counted by shape in this process, stored every CHARPENTE_SHAPE_LOG_SECONDS."""
    store = SqlShapeStore(database)
    if not settings.shape_log:
        return ShapeLogParts(database, ShapeReport(store), None)
    log = ShapeLog()
    flusher = ShapeFlusher(log, store, settings.shape_log_seconds, SystemClock())
    return ShapeLogParts(MeasuredDatabase(database, log), ShapeReport(store, flusher), flusher)


@asynccontextmanager
async def open_shape_store(settings: Settings, design: Design) -> AsyncIterator[SqlShapeStore]:
    """The stored shape log of the configured database (for `charpente shapes`, `advise`)."""
    database = SqlDatabase(_engine(settings), design)
    try:
        yield SqlShapeStore(database)
    finally:
        await database.close()


@dataclasses.dataclass(frozen=True)
class AdviceTools:
    """What `charpente advise` works with: the stored shape log, the planner, the verifier."""

    store: SqlShapeStore
    planner: IndexPlanner
    verifier: IndexVerifierPort


@asynccontextmanager
async def open_index_planner(settings: Settings, design: Design) -> AsyncIterator[AdviceTools]:
    """The stored shape log, the database's planner and the verifier, for `charpente advise`."""
    engine = _engine(settings)
    database = SqlDatabase(engine, design)
    planner = planner_for(engine, design)
    try:
        await planner.open()
        try:
            yield AdviceTools(SqlShapeStore(database), planner, IndexVerifier(engine, design))
        finally:
            await planner.close()
    finally:
        await database.close()


async def start_database_migration(
    settings: Settings, design: Design, progress: Callable[[str, int, int], None] | None = None
) -> Started:
    """`charpente migrate start`: expand the database so both designs run (PostgreSQL)."""
    async with open_engine(settings) as engine:
        return await start_migration(engine, design, progress)


async def complete_database_migration(settings: Settings, design: Design) -> tuple[Rename, ...]:
    """`charpente migrate complete`: contract once no process of the old design runs."""
    async with open_engine(settings) as engine:
        return await complete_migration(engine, design)


def build_response_cache(
    settings: Settings, design: Design
) -> tuple[ResponseCache | None, Callable[[], Coroutine[Any, Any, None]]]:
    """The response cache of the design's cached resources (None when none is), in Redis
    with CHARPENTE_REDIS_URL, else in this process; and what closes it."""

    async def nothing() -> None:
        return None

    if not any(r.cache is not None for r in design.resources.values()):
        return None, nothing
    if settings.redis_url is None:
        return ResponseCache(design, MemoryCache()), nothing
    from charpente.cache.responses import redis_cache_from_url

    redis_cache = redis_cache_from_url(settings.redis_url, f"charpente:{design.name}:cache:")
    store: Cache = redis_cache
    return ResponseCache(design, store), redis_cache.close


def _cache_repair(
    cache: ResponseCache | None, database: SqlDatabase, clock: Clock
) -> tuple[Callable[[], Coroutine[Any, Any, None]], Callable[[], Coroutine[Any, Any, None]]]:
    """Start and stop of the loop that bumps again for recent writes (lost bumps)."""
    if cache is None:

        async def nothing() -> None:
            return None

        return nothing, nothing
    repair = CacheRepair(cache, SqlWriteLog(database), clock)
    return repair.start, repair.stop
