"""Settings: the engine's configuration, read from environment variables — the only reader of them.

`Settings.from_env(os.environ)` is called at the edge (the CLI, the ASGI factory); the rest of
the code is handed a Settings. Every bad value is a ConfigError naming its variable.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from email.utils import parseaddr
from pathlib import Path
from typing import Any
from urllib.parse import unquote_plus, urlsplit, urlunsplit

from charpente.errors import ConfigError
from charpente.http.clientip import parse_trusted_proxies
from charpente.outbound.mail import smtp_target
from charpente.runtime.secrets import Sealer

__all__ = [
    "DEFAULT_DATABASE_URL",
    "DEFAULT_DESIGN_FILE",
    "LOG_LEVELS",
    "TEMPLATE_PREFIX",
    "Settings",
    "export_metrics_directory",
    "export_to_process",
    "redacted_url",
    "settings_from_process",
    "to_environ",
]

DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///charpente.db"
DEFAULT_DESIGN_FILE = "design.yaml"
TEMPLATE_PREFIX = "template:"
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")

_MAX_POOL_SIZE = 1_000
_MAX_BODY_CEILING = 1 << 30  # 1 GiB: beyond that a body belongs in object storage
_SCHEMA_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")
_TEMPLATE_NAME = re.compile(r"[a-z][a-z0-9_-]{0,62}")
_URL_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")
_ADDRESS = re.compile(r"[^@\s<>]{1,64}@[^@\s<>]{1,253}")


@dataclass(frozen=True)
class Settings:
    """What the engine needs from its environment.

    `design_path` None means the embedded template `design_template` (social by default).
    """

    database_url: str = field(default=DEFAULT_DATABASE_URL, repr=False)
    database_schema: str | None = None
    design_path: Path | None = None
    design_template: str = "social"
    pool_size: int = 10
    max_body_bytes: int = 1 << 20
    log_level: str = "info"
    access_log: bool = False
    redis_url: str | None = field(default=None, repr=False)
    trusted_proxies: str = ""  # addresses and networks, comma-separated
    secret_keys: str | None = field(default=None, repr=False)  # "kid:base64,..." (AES-256)
    issuer: str | None = None  # the `iss` of access tokens (default charpente:<design name>)
    public_url: str | None = None  # where clients reach the API (OAuth callback URLs)
    bus_url: str | None = field(default=None, repr=False)  # None: in-process (memory)
    worker: str = "embedded"  # embedded: serve relays, delivers and runs jobs; separate: it doesn't
    history_retention_days: int | None = None  # `charpente history archive` without --older-than
    design_missing: bool = field(
        default=False, compare=False
    )  # neither CHARPENTE_DESIGN nor ./design.yaml: commands stop
    drain_seconds: float = 5.0  # after SIGTERM: seconds serving (not ready) before stopping
    log_format: str = "text"  # text | json (one JSON object per line)
    metrics: bool = True  # record request metrics and serve /metrics (CHARPENTE_METRICS)
    metrics_directory: str | None = None  # PROMETHEUS_MULTIPROC_DIR: serve's processes share it
    traces_exporter: str | None = None  # otlp | console, from the standard OTEL_* variables
    otel_service_name: str | None = None  # OTEL_SERVICE_NAME (default charpente-<design>)
    smtp_url: str | None = field(default=None, repr=False)  # None: mail goes to the log
    mail_from: str | None = None  # the From of the engine's email
    mail_dir: Path | None = None  # where the log mailer also writes each message (.eml)
    shape_log: bool = True  # count reads by shape into charpente_query_shapes
    shape_log_seconds: int = 60  # how often each process stores its counts

    @classmethod
    def from_env(cls, environ: Mapping[str, str], *, cwd: Path | None = None) -> Settings:
        """Read every CHARPENTE_* variable; relative design paths are relative to `cwd`
        (default: the working directory, and they stay relative)."""
        design_path, template = _design(environ.get("CHARPENTE_DESIGN"), cwd or Path())
        return cls(
            database_url=_database_url(environ.get("CHARPENTE_DATABASE_URL")),
            database_schema=_schema(environ.get("CHARPENTE_DATABASE_SCHEMA")),
            design_path=design_path,
            design_template=template,
            pool_size=_integer(environ, "CHARPENTE_POOL_SIZE", 10, _MAX_POOL_SIZE),
            max_body_bytes=_integer(
                environ, "CHARPENTE_MAX_BODY_BYTES", 1 << 20, _MAX_BODY_CEILING
            ),
            log_level=_log_level(environ.get("CHARPENTE_LOG_LEVEL")),
            access_log=_boolean(environ, "CHARPENTE_ACCESS_LOG", default=False),
            redis_url=_redis_url(environ.get("CHARPENTE_REDIS_URL")),
            trusted_proxies=_proxies(environ.get("CHARPENTE_TRUSTED_PROXIES")),
            secret_keys=_secret_keys(environ.get("CHARPENTE_SECRET_KEYS")),
            issuer=environ.get("CHARPENTE_ISSUER") or None,
            public_url=_public_url(environ.get("CHARPENTE_PUBLIC_URL")),
            bus_url=_bus_url(environ.get("CHARPENTE_BUS_URL")),
            worker=_worker(environ.get("CHARPENTE_WORKER")),
            history_retention_days=_retention(environ.get("CHARPENTE_HISTORY_RETENTION_DAYS")),
            design_missing=_design_missing(environ.get("CHARPENTE_DESIGN"), cwd or Path()),
            drain_seconds=_drain_seconds(environ.get("CHARPENTE_DRAIN_SECONDS")),
            log_format=_log_format(environ.get("CHARPENTE_LOG_FORMAT")),
            metrics=_boolean(environ, "CHARPENTE_METRICS", default=True),
            metrics_directory=environ.get("PROMETHEUS_MULTIPROC_DIR") or None,
            traces_exporter=_traces_exporter(environ),
            otel_service_name=environ.get("OTEL_SERVICE_NAME") or None,
            **_mail(environ),
            shape_log=_boolean(environ, "CHARPENTE_SHAPE_LOG", default=True),
            shape_log_seconds=_integer(environ, "CHARPENTE_SHAPE_LOG_SECONDS", 60, 3600),
        )

    @property
    def design_label(self) -> str:
        """The design for people: its path, or `template:social`."""
        if self.design_path is None:
            return TEMPLATE_PREFIX + self.design_template
        return str(self.design_path)

    def __repr__(self) -> str:
        return (
            f"Settings(database_url={redacted_url(self.database_url)!r}, "
            f"database_schema={self.database_schema!r}, design={self.design_label!r}, "
            f"pool_size={self.pool_size}, max_body_bytes={self.max_body_bytes}, "
            f"log_level={self.log_level!r}, access_log={self.access_log}, "
            f"redis={'set' if self.redis_url else 'none'}, "
            f"trusted_proxies={self.trusted_proxies!r}, "
            f"secret_keys={'set' if self.secret_keys else 'none'}, "
            f"bus={redacted_url(self.bus_url) if self.bus_url else 'memory'!r}, "
            f"worker={self.worker!r}, "
            f"smtp={'set' if self.smtp_url else 'none'})"
        )


def to_environ(settings: Settings) -> dict[str, str]:
    """The variables that make `Settings.from_env` give back `settings` (for worker processes)."""
    environ = {
        "CHARPENTE_DATABASE_URL": settings.database_url,
        "CHARPENTE_DESIGN": settings.design_label,
        "CHARPENTE_POOL_SIZE": str(settings.pool_size),
        "CHARPENTE_MAX_BODY_BYTES": str(settings.max_body_bytes),
        "CHARPENTE_LOG_LEVEL": settings.log_level,
        "CHARPENTE_ACCESS_LOG": "true" if settings.access_log else "false",
        "CHARPENTE_DRAIN_SECONDS": str(settings.drain_seconds),
    }
    if settings.database_schema is not None:
        environ["CHARPENTE_DATABASE_SCHEMA"] = settings.database_schema
    optional = {
        "CHARPENTE_REDIS_URL": settings.redis_url,
        "CHARPENTE_TRUSTED_PROXIES": settings.trusted_proxies or None,
        "CHARPENTE_SECRET_KEYS": settings.secret_keys,
        "CHARPENTE_ISSUER": settings.issuer,
        "CHARPENTE_PUBLIC_URL": settings.public_url,
        "CHARPENTE_BUS_URL": settings.bus_url,
        "CHARPENTE_WORKER": settings.worker,
        "CHARPENTE_LOG_FORMAT": settings.log_format,
        "CHARPENTE_SMTP_URL": settings.smtp_url,
        "CHARPENTE_MAIL_FROM": settings.mail_from,
        "CHARPENTE_MAIL_DIR": None if settings.mail_dir is None else str(settings.mail_dir),
    }
    environ.update({k: v for k, v in optional.items() if v is not None})
    environ["CHARPENTE_SHAPE_LOG"] = "true" if settings.shape_log else "false"
    environ["CHARPENTE_METRICS"] = "true" if settings.metrics else "false"
    environ["CHARPENTE_SHAPE_LOG_SECONDS"] = str(settings.shape_log_seconds)
    return environ


def environment_secret(name: str) -> str | None:
    """A variable the design names for a secret (`client_secret: env:NAME`); never logged."""
    value = os.environ.get(name)
    return value or None


def settings_from_process() -> Settings:
    """The settings of this process's environment (the edge: CLI, ASGI factory)."""
    return Settings.from_env(os.environ)


def export_to_process(settings: Settings) -> None:
    """Put `settings` in this process's environment, for the server processes it starts."""
    os.environ.update(to_environ(settings))
    if settings.database_schema is None:
        os.environ.pop("CHARPENTE_DATABASE_SCHEMA", None)


def export_metrics_directory(directory: str) -> None:
    """Make the server processes started from now on share their metrics in `directory`
    (prometheus-client's multiprocess mode reads PROMETHEUS_MULTIPROC_DIR when it loads)."""
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = directory


def _traces_exporter(environ: Mapping[str, str]) -> str | None:
    """Where spans go, from OpenTelemetry's standard variables: None (tracing off, the
    default), `otlp` (OTEL_EXPORTER_OTLP_ENDPOINT or ..._TRACES_ENDPOINT set, or
    OTEL_TRACES_EXPORTER=otlp) or `console`. The SDK reads the other OTEL_* itself."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return None
    named = environ.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if named == "none":
        return None
    if named in ("otlp", "console"):
        return named
    if named:
        raise ConfigError(f"OTEL_TRACES_EXPORTER must be otlp, console or none, not {named!r}")
    endpoints = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    return "otlp" if any(environ.get(name, "").strip() for name in endpoints) else None


def _log_format(value: str | None) -> str:
    if value is None or not value.strip():
        return "text"
    found = value.strip().lower()
    if found not in ("text", "json"):
        raise ConfigError(f"CHARPENTE_LOG_FORMAT must be text or json, not {value!r}")
    return found


def redacted_url(url: str) -> str:
    """`url` with its passwords (in the user info or the query string) replaced by `***`,
    fit for logs and terminals."""
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        return "<an unparsable URL>"
    query = _redacted_query(parts.query)
    if not password and query == parts.query:
        return url
    netloc = parts.netloc
    if password:
        userinfo, _, host = netloc.rpartition("@")
        netloc = f"{userinfo.split(':', 1)[0]}:***@{host}"
    return urlunsplit(parts._replace(netloc=netloc, query=query))


def _redacted_query(query: str) -> str:
    """A query string whose password-like parameters (any name containing "password") show
    `***` as their value."""
    kept = []
    for part in query.split("&"):
        name = part.split("=", 1)[0]
        kept.append(f"{name}=***" if "password" in unquote_plus(name).lower() else part)
    return "&".join(kept)


def _database_url(value: str | None) -> str:
    if value is None or not value.strip():
        return DEFAULT_DATABASE_URL
    url = value.strip()
    if not _URL_SCHEME.match(url):
        raise ConfigError(
            "CHARPENTE_DATABASE_URL is not a database URL: expected something like "
            "postgresql+asyncpg://user:password@host/db or sqlite+aiosqlite:///file.db"
        )
    return url


def _schema(value: str | None) -> str | None:
    if value is None or not value.strip():
        return None
    if not _SCHEMA_NAME.fullmatch(value.strip()):
        raise ConfigError(
            f"CHARPENTE_DATABASE_SCHEMA {value!r} is not a schema name "
            "(letters, digits and _, at most 63, not starting with a digit)"
        )
    return value.strip()


def _design(value: str | None, cwd: Path) -> tuple[Path | None, str]:
    if value is None or not value.strip():
        default = cwd / DEFAULT_DESIGN_FILE
        return (default, "social") if default.is_file() else (None, "social")
    value = value.strip()
    if value.startswith(TEMPLATE_PREFIX):
        name = value.removeprefix(TEMPLATE_PREFIX)
        if not _TEMPLATE_NAME.fullmatch(name):
            raise ConfigError(f"CHARPENTE_DESIGN {value!r} does not name a template")
        return None, name
    path = cwd / value
    if not path.is_file():
        raise ConfigError(f"CHARPENTE_DESIGN {value!r}: no such file")
    return path, "social"


def _design_missing(value: str | None, cwd: Path) -> bool:
    """Whether no design was named (CHARPENTE_DESIGN) and none is at ./design.yaml."""
    return (value is None or not value.strip()) and not (cwd / DEFAULT_DESIGN_FILE).is_file()


_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off", ""})


def _boolean(environ: Mapping[str, str], name: str, *, default: bool) -> bool:
    value = environ.get(name)
    if value is None:
        return default
    if value.strip().lower() in _TRUE:
        return True
    if value.strip().lower() in _FALSE:
        return False
    raise ConfigError(f"{name} must be true or false, not {value!r}")


def _integer(environ: Mapping[str, str], name: str, default: int, ceiling: int) -> int:
    value = environ.get(name)
    if value is None or not value.strip():
        return default
    try:
        number = int(value.strip())
    except ValueError:
        raise ConfigError(f"{name} must be a whole number, not {value!r}") from None
    if not 1 <= number <= ceiling:
        raise ConfigError(f"{name} must be between 1 and {ceiling}, not {number}")
    return number


def _log_level(value: str | None) -> str:
    if value is None or not value.strip():
        return "info"
    level = value.strip().lower()
    if level not in LOG_LEVELS:
        raise ConfigError(
            f"CHARPENTE_LOG_LEVEL must be one of {', '.join(LOG_LEVELS)}, not {value!r}"
        )
    return level


def _redis_url(value: str | None) -> str | None:
    if not value:
        return None
    if not value.startswith(("redis://", "rediss://", "unix://")):
        raise ConfigError("CHARPENTE_REDIS_URL must start with redis://, rediss:// or unix://")
    return value


_BUS_SCHEMES = ("memory://", "amqp://", "amqps://", "nats://", "tls://", "redis://", "rediss://")


def _bus_url(value: str | None) -> str | None:
    if not value or value.strip() == "memory://":
        return None
    if not value.strip().lower().startswith(_BUS_SCHEMES):
        schemes = ", ".join(_BUS_SCHEMES)
        raise ConfigError(f"CHARPENTE_BUS_URL must start with one of {schemes}")
    return value.strip()


def _retention(value: str | None) -> int | None:
    if not value:
        return None
    if not value.isdigit() or not 1 <= int(value) <= 36500:
        raise ConfigError("CHARPENTE_HISTORY_RETENTION_DAYS is a number of days, 1 to 36500")
    return int(value)


def _worker(value: str | None) -> str:
    if not value:
        return "embedded"
    if value not in ("embedded", "separate"):
        raise ConfigError(
            "CHARPENTE_WORKER is `embedded` (serve relays events, delivers webhooks and runs "
            "jobs) or `separate` (`charpente worker` does)"
        )
    return value


def _proxies(value: str | None) -> str:
    """The trusted proxies, checked now so that a typo stops the start, not a request."""
    if not value:
        return ""
    try:
        parse_trusted_proxies(value)
    except ValueError as error:
        raise ConfigError(f"CHARPENTE_TRUSTED_PROXIES: {error}") from None
    return value


def _secret_keys(value: str | None) -> str | None:
    """The AES-256 keys that seal signing keys and encrypted fields; never echoed."""
    if not value:
        return None
    try:
        Sealer.from_env_value(value)
    except ValueError as error:
        raise ConfigError(f"CHARPENTE_SECRET_KEYS: {error}") from None
    return value


def _public_url(value: str | None) -> str | None:
    if not value:
        return None
    parts = urlsplit(value)
    if parts.scheme not in ("https", "http") or not parts.netloc or parts.path not in ("", "/"):
        raise ConfigError("CHARPENTE_PUBLIC_URL must be like https://api.example.com (no path)")
    return value.rstrip("/")


MAX_DRAIN_SECONDS = 300.0


def _drain_seconds(value: str | None) -> float:
    if value is None or not value.strip():
        return 5.0
    try:
        seconds = float(value.strip())
    except ValueError:
        seconds = -1.0
    if not 0 <= seconds <= MAX_DRAIN_SECONDS:  # also refuses nan
        raise ConfigError(
            f"CHARPENTE_DRAIN_SECONDS is a number of seconds, 0 to {MAX_DRAIN_SECONDS:g}, "
            f"not {value!r}"
        )
    return seconds


def _mail(environ: Mapping[str, str]) -> dict[str, Any]:
    """CHARPENTE_SMTP_URL (checked now, never echoed), CHARPENTE_MAIL_FROM (required with
    it: an address, or `Name <address>`) and CHARPENTE_MAIL_DIR."""
    url = (environ.get("CHARPENTE_SMTP_URL") or "").strip() or None
    sender = (environ.get("CHARPENTE_MAIL_FROM") or "").strip() or None
    if url is not None:
        smtp_target(url)  # raises ConfigError naming what is wrong
        if sender is None:
            raise ConfigError("CHARPENTE_SMTP_URL is set: set CHARPENTE_MAIL_FROM too")
    if sender is not None:
        address = parseaddr(sender)[1]
        if not _ADDRESS.fullmatch(address) or "\n" in sender or "\r" in sender:
            raise ConfigError("CHARPENTE_MAIL_FROM must be an email address, or `Name <address>`")
    folder = (environ.get("CHARPENTE_MAIL_DIR") or "").strip()
    return {"smtp_url": url, "mail_from": sender, "mail_dir": Path(folder) if folder else None}
