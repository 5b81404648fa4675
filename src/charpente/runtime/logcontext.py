"""The log context of a request, and the two log formats (text, json).

The HTTP edge puts the request id and the route template in a context variable while a
request runs (`enter`, `leave`); every log line written meanwhile — by charpente, uvicorn
or a hook — carries them. With `--log-format json` (CHARPENTE_LOG_FORMAT=json) each line is
one JSON object: `timestamp` (RFC 3339, UTC), `level`, `logger`, `message`, `request_id`,
`trace_id`, `span_id`, and for the access log `http.route`, `http.request.method`,
`status`, `duration_s`; a traceback is in `exception`, as one string.
"""

from __future__ import annotations

import datetime
import json
import logging
from contextvars import ContextVar, Token
from typing import Any

from charpente.runtime import tracing

__all__ = [
    "LOG_FORMATS",
    "JsonFormatter",
    "TextFormatter",
    "current",
    "enter",
    "json_line",
    "leave",
    "uvicorn_log_config",
]

LOG_FORMATS = ("text", "json")

_current: ContextVar[tuple[str | None, str] | None] = ContextVar("charpente_log", default=None)

# What a LogRecord has of its own: anything else in its __dict__ came as `extra=`.
_RECORD_FIELDS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "color_message",  # uvicorn's copy of the message with terminal colours
    "taskName",
}


def enter(request_id: str | None, route: str) -> Token[tuple[str | None, str] | None]:
    """Mark the rest of this task as serving one request (until `leave`)."""
    return _current.set((request_id, route))


def leave(token: Token[tuple[str | None, str] | None]) -> None:
    _current.reset(token)


def current() -> tuple[str | None, str] | None:
    """(request id, route) of the request being served, or None."""
    return _current.get()


class JsonFormatter(logging.Formatter):
    """One JSON object per line (see the module's docstring)."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "timestamp": _rfc3339(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        found = _current.get()
        line["request_id"] = None if found is None else found[0]
        if found is not None:
            line["http.route"] = found[1]
        ids = tracing.ids_of_current_span()
        line["trace_id"], line["span_id"] = (None, None) if ids is None else ids
        access = record.__dict__.get("access")
        if isinstance(access, dict):  # the access log: its fields at the top
            line.update(access)
            line["message"] = f"{access['http.request.method']} {access['url.path']} "
            line["message"] += str(access["status"])
        for key, value in record.__dict__.items():
            if key not in _RECORD_FIELDS and key != "access" and not key.startswith("_"):
                line[key] = value
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            line["exception"] = record.exc_text
        return json.dumps(line, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """`time level logger: message`, one line per record (the default format)."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")


def json_line(logger: str, message: str, level: int = logging.INFO) -> str:
    """`message` as the json format writes it, for a line printed outside logging."""
    record = logging.LogRecord(logger, level, "", 0, message, None, None)
    return JsonFormatter().format(record)


def _rfc3339(created: float) -> str:
    moment = datetime.datetime.fromtimestamp(created, datetime.UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def uvicorn_log_config(log_format: str) -> dict[str, Any]:
    """uvicorn's options for `log_format`: none for text (uvicorn's own); for json a
    `log_config` whose loggers write through JsonFormatter, like charpente's."""
    if log_format != "json":
        return {}
    handler = {
        "class": "logging.StreamHandler",
        "formatter": "json",
        "stream": "ext://sys.stderr",
    }
    return {"log_config": _json_log_config(handler)}


def _json_log_config(handler: dict[str, str]) -> dict[str, Any]:
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": f"{__name__}.JsonFormatter"}},
        "handlers": {"json": handler},
        "loggers": {
            "uvicorn": {"handlers": ["json"], "level": "INFO", "propagate": False},
            "uvicorn.error": {"level": "INFO"},
            "uvicorn.access": {"handlers": ["json"], "level": "INFO", "propagate": False},
        },
    }
