"""Names a bus hands to a broker, checked before they get there, and URLs fit for a log.

An exchange, stream or subject prefix that a broker would refuse, or read as a wildcard,
is an error when the bus is built, not a mystery at the first publish. Broker URLs carry
credentials: `masked_url` and `without_secrets` keep them out of logs and error messages.
"""

from __future__ import annotations

import re
from typing import Final
from urllib.parse import urlsplit, urlunsplit

__all__ = ["check_key", "check_name", "masked_url", "without_secrets"]

MAX_NAME_LENGTH: Final = 200
# AMQP exchange and queue names, Redis keys: letters, digits and a few separators.
NAME: Final = re.compile(r"[A-Za-z0-9_.:-]+")
# NATS stream names: no dots, wildcards or whitespace.
STREAM: Final = re.compile(r"[A-Za-z0-9_-]+")
# Dot-separated tokens: routing keys, NATS subjects and subject prefixes (no `*` or `>`).
KEY: Final = re.compile(r"[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*")

_SECRET_PARAMETER: Final = re.compile(r"(?i)(password|token|secret|key)")


def check_name(what: str, value: str, pattern: re.Pattern[str] = NAME) -> str:
    """`value` if it is a usable broker-side name for `what`; ValueError saying why if not."""
    if not value or len(value) > MAX_NAME_LENGTH:
        raise ValueError(f"{what} must have 1 to {MAX_NAME_LENGTH} characters, not {len(value)}")
    if not pattern.fullmatch(value):
        raise ValueError(f"{what} {value!r} may hold only letters, digits and {_allowed(pattern)}")
    return value


def check_key(key: str) -> str:
    """A message's routing key (`{resource}.{action}`), fit for AMQP and NATS subjects."""
    return check_name("a routing key", key, KEY)


def masked_url(url: str) -> str:
    """`url` without its credentials: the user info becomes `***`, secret parameters too."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        return "<unreadable URL>"
    netloc = f"[{host}]" if ":" in host else host
    if port is not None:
        netloc = f"{netloc}:{port}"
    if parts.username is not None or parts.password is not None:
        netloc = f"***@{netloc}"
    query = "&".join(_masked_parameter(part) for part in parts.query.split("&") if part)
    return urlunsplit((parts.scheme, netloc, parts.path, query, ""))


def without_secrets(text: str, url: str) -> str:
    """`text` (say, a driver's error message) with the password of `url` masked, or its user
    name when it has no password (NATS reads `nats://TOKEN@host` as a token)."""
    try:
        parts = urlsplit(url)
        secret = parts.password if parts.password is not None else parts.username
    except ValueError:
        return text
    return text.replace(secret, "***") if secret else text


def _masked_parameter(part: str) -> str:
    name, equals, _ = part.partition("=")
    return f"{name}=***" if equals and _SECRET_PARAMETER.search(name) else part


def _allowed(pattern: re.Pattern[str]) -> str:
    if pattern is STREAM:
        return "_ -"
    if pattern is KEY:
        return "_ - (dot-separated words)"
    return "_ . : -"
