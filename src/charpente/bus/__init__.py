"""Adapters for the Bus port: in-process, RabbitMQ, NATS JetStream and Redis Streams.

Imported by wiring only; the runtime knows the Bus port, never these modules.
`bus_from_url` picks the adapter by the URL's scheme:

    None, memory://                   MemoryBus (in-process; the default)
    amqp://, amqps://                 RabbitBus        ?exchange=charpente&queue=NAME&timeout=5
    nats://, tls://                   NatsBus          ?prefix=charpente&stream=NAME&max_messages=N
    redis://, rediss://               RedisStreamBus   ?stream=charpente:events&maxlen=N

Those query parameters are the bus's own and are taken out of the URL; every other one
goes to the client library (`heartbeat` for aio-pika, `db` for Redis, …).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from types import ModuleType
from typing import Final
from urllib.parse import parse_qsl, urlsplit, urlunsplit

from charpente.errors import ConfigError
from charpente.runtime.ports import Bus

__all__ = ["bus_from_url"]

_EXTRAS: Final = {  # the adapter's extra, the broker's name, the libraries it imports
    "charpente.bus.rabbitmq": ("rabbitmq", "RabbitMQ", {"aio_pika", "aiormq", "pamqp", "yarl"}),
    "charpente.bus.nats": ("nats", "NATS", {"nats"}),
    "charpente.bus.redis_streams": ("redis", "Redis", {"redis"}),
}


def bus_from_url(url: str | None, *, name: str) -> Bus:
    """The bus for `url` (None: in-process). `name` (the design's) labels the connection.

    Raises ValueError for an unknown scheme or a bad parameter, ConfigError when the
    client library of that broker is not installed.
    """
    if url is None or not url.strip():
        return _memory(url or "", name)
    url = url.strip()
    scheme = url.partition("://")[0].lower() if "://" in url else ""
    build = _BUILDERS.get(scheme)
    if build is None:
        known = ", ".join(f"{s}://" for s in _BUILDERS)
        raise ValueError(f"a bus URL starts with one of {known}; not {url.split(':', 1)[0]!r}")
    return build(url, name)


def _memory(url: str, _name: str) -> Bus:
    from charpente.bus.memory import MemoryBus

    if urlsplit(url).query:
        raise ValueError("a memory:// bus takes no parameters")
    return MemoryBus()


def _rabbitmq(url: str, name: str) -> Bus:
    url, options = _own_options(url, {"exchange", "queue", "timeout"})
    module = _adapter("charpente.bus.rabbitmq")
    bus: Bus = module.RabbitBus(
        url,
        exchange=options.get("exchange", "charpente"),
        queue=options.get("queue"),
        timeout=_number(options, "timeout", 5.0),
        connection_name=f"charpente {name}",
    )
    return bus


def _nats(url: str, name: str) -> Bus:
    url, options = _own_options(url, {"prefix", "stream", "max_messages", "timeout"})
    module = _adapter("charpente.bus.nats")
    bus: Bus = module.NatsBus(
        url,
        prefix=options.get("prefix", "charpente"),
        stream=options.get("stream"),
        timeout=_number(options, "timeout", 5.0),
        max_messages=_integer(options, "max_messages", 1_000_000),
        client_name=f"charpente {name}",
    )
    return bus


def _redis(url: str, _name: str) -> Bus:
    url, options = _own_options(url, {"stream", "maxlen", "timeout"})
    module = _adapter("charpente.bus.redis_streams")
    bus: Bus = module.RedisStreamBus(
        url,
        stream=options.get("stream", "charpente:events"),
        maxlen=_integer(options, "maxlen", 1_000_000),
        timeout=_number(options, "timeout", 5.0),
    )
    return bus


_BUILDERS: Final[dict[str, Callable[[str, str], Bus]]] = {
    "memory": _memory,
    "amqp": _rabbitmq,
    "amqps": _rabbitmq,
    "nats": _nats,
    "tls": _nats,
    "redis": _redis,
    "rediss": _redis,
}


def _own_options(url: str, names: set[str]) -> tuple[str, dict[str, str]]:
    """`url` without the bus's own query parameters, and their values (each given once)."""
    parts = urlsplit(url)
    options: dict[str, str] = {}
    kept: list[str] = []
    for raw in parts.query.split("&"):
        if not raw:
            continue
        pairs = parse_qsl(raw, keep_blank_values=True)
        key, value = pairs[0] if pairs else (raw, "")
        if key not in names:
            kept.append(raw)
            continue
        if key in options:
            raise ValueError(f"the bus URL gives {key!r} twice")
        options[key] = value
    return urlunsplit(parts._replace(query="&".join(kept))), options


def _number(options: dict[str, str], key: str, default: float) -> float:
    if key not in options:
        return default
    try:
        return float(options[key])
    except ValueError:
        raise ValueError(f"the bus URL's {key} must be a number, not {options[key]!r}") from None


def _integer(options: dict[str, str], key: str, default: int) -> int:
    if key not in options:
        return default
    value = options[key].replace("_", "")
    if not value.isdigit() or len(value) > 13:
        raise ValueError(f"the bus URL's {key} must be a whole number, not {options[key]!r}")
    return int(value)


def _adapter(module: str) -> ModuleType:
    """Import an adapter; a missing client library says which extra to install."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        extra, broker, libraries = _EXTRAS[module]
        if exc.name is None or exc.name.split(".")[0] not in libraries:
            raise
        raise ConfigError(
            f"CHARPENTE_BUS_URL is {broker}: pip install 'charpente[{extra}]'"
        ) from None
