"""The async SQLAlchemy engine for a database URL: SQLite (embedded) or PostgreSQL.

Owns connection settings (SQLite pragmas, PostgreSQL pool and search_path) and the SQLite
writer discipline: `BEGIN IMMEDIATE` for writes plus one in-process writer lock. On
PostgreSQL the Database adapter holds the pool (`postgres_options`); the engine keeps one
connection for migrations and checks.
"""

from __future__ import annotations

import asyncio
import sqlite3
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from charpente.errors import ConfigError

__all__ = [
    "SQLITE_BEGIN",
    "PostgresOptions",
    "create_engine",
    "is_memory_sqlite",
    "is_sqlite",
    "missing_sqlite_file",
    "postgres_options",
    "writer_lock",
]

SQLITE_BEGIN = "charpente_sqlite_begin"
"""Execution option, SQLite only: how a transaction opens. "immediate" (a write: takes the
write lock at once), "none" (autocommit: one read statement), else a deferred BEGIN."""

_DRIVERS = {
    "sqlite": "sqlite+aiosqlite",
    "sqlite+aiosqlite": "sqlite+aiosqlite",
    "postgres": "postgresql+asyncpg",
    "postgresql": "postgresql+asyncpg",
    "postgresql+asyncpg": "postgresql+asyncpg",
}
_PG_ENGINE_POOL = 1  # the adapter's own pool serves requests: keep no second set idle
_SQLALCHEMY_ONLY = frozenset(  # URL query options SQLAlchemy's asyncpg dialect consumes itself
    {"prepared_statement_cache_size", "prepared_statement_name_func", "async_fallback"}
)
_SQLITE_MINIMUM = (3, 35)
_SQLITE_PRAGMAS = ("foreign_keys=ON", "busy_timeout=5000", "synchronous=NORMAL")

_locks: weakref.WeakKeyDictionary[sa.Engine, asyncio.Lock] = weakref.WeakKeyDictionary()


@dataclass(frozen=True, slots=True)
class PostgresOptions:
    """How the Database adapter opens its own PostgreSQL connections: asyncpg.connect
    keyword arguments (search_path included) and how many it may hold."""

    connect: dict[str, Any]
    pool_size: int


_postgres: weakref.WeakKeyDictionary[sa.Engine, PostgresOptions] = weakref.WeakKeyDictionary()


def create_engine(url: str, *, schema: str | None = None, pool_size: int = 10) -> AsyncEngine:
    """An engine for `url`; `schema` is PostgreSQL's search_path. Raises ConfigError."""
    parsed = _parse(url)
    if parsed.drivername == "sqlite+aiosqlite":
        return _sqlite_engine(parsed, pool_size)
    return _postgres_engine(parsed, schema, pool_size)


def is_sqlite(engine: AsyncEngine) -> bool:
    """Whether `engine` talks to SQLite (writes are then serialized)."""
    return engine.dialect.name == "sqlite"


def is_memory_sqlite(engine: AsyncEngine) -> bool:
    """Whether `engine` is an in-memory SQLite database (one shared connection)."""
    return is_sqlite(engine) and _is_memory(engine.url)


def missing_sqlite_file(url: str) -> bool:
    """Whether `url` is a SQLite file that does not exist yet (connecting would create it)."""
    parsed = _parse(url)
    if parsed.drivername != "sqlite+aiosqlite" or _is_memory(parsed):
        return False
    database = parsed.database or ""
    if database.startswith("file:"):  # a URI filename: leave it to SQLite
        return False
    return not Path(database).exists()


def postgres_options(engine: AsyncEngine) -> PostgresOptions:
    """The connection options of a PostgreSQL engine made by `create_engine`."""
    return _postgres[engine.sync_engine]


def writer_lock(engine: AsyncEngine) -> asyncio.Lock:
    """The one lock every write transaction on this SQLite engine holds, in this process."""
    lock = _locks.get(engine.sync_engine)
    if lock is None:
        lock = _locks[engine.sync_engine] = asyncio.Lock()
    return lock


def _parse(url: str) -> sa.URL:
    try:
        parsed = sa.make_url(url)
    except (sa.exc.ArgumentError, ValueError) as exc:
        raise ConfigError(f"The database URL is not valid ({exc}).") from None
    driver = _DRIVERS.get(parsed.drivername)
    if driver is None:
        raise ConfigError(
            f"The database URL uses {parsed.drivername!r}; charpente supports "
            "sqlite+aiosqlite:// and postgresql+asyncpg:// (or postgresql://)."
        )
    return parsed.set(drivername=driver)


def _sqlite_engine(url: sa.URL, pool_size: int) -> AsyncEngine:
    if sqlite3.sqlite_version_info < _SQLITE_MINIMUM:
        raise ConfigError(
            f"SQLite {sqlite3.sqlite_version} is too old: charpente needs 3.35 or later "
            "(for RETURNING); upgrade Python or its sqlite3 library."
        )
    memory = _is_memory(url)
    kwargs: dict[str, Any] = {} if memory else {"pool_size": pool_size, "max_overflow": 0}
    engine = create_async_engine(url, hide_parameters=True, **kwargs)
    event.listen(engine.sync_engine, "connect", _sqlite_on_connect(not memory))
    event.listen(engine.sync_engine, "begin", _sqlite_begin)
    return engine


def _is_memory(url: sa.URL) -> bool:
    return (url.database or "") in ("", ":memory:") or url.query.get("mode") == "memory"


def _sqlite_on_connect(file_based: bool) -> Any:
    pragmas = (*_SQLITE_PRAGMAS, "journal_mode=WAL") if file_based else _SQLITE_PRAGMAS

    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        # SQLAlchemy's recipe: the driver stops emitting BEGIN, _sqlite_begin does it.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        for pragma in pragmas:
            cursor.execute(f"PRAGMA {pragma}")
        cursor.close()

    return on_connect


def _sqlite_begin(connection: sa.Connection) -> None:
    mode = connection.get_execution_options().get(SQLITE_BEGIN)
    if mode == "immediate":
        connection.exec_driver_sql("BEGIN IMMEDIATE")
    elif mode != "none":
        connection.exec_driver_sql("BEGIN")


def _postgres_engine(url: sa.URL, schema: str | None, pool_size: int) -> AsyncEngine:
    connect_args: dict[str, Any] = {}
    if schema is not None:
        connect_args["server_settings"] = {"search_path": schema}
    # Overflow connections serve the rare concurrent use of the engine itself (migrations,
    # checks), closed when returned.
    try:
        import asyncpg  # noqa: F401  (SQLAlchemy's dialect imports it when the engine is made)
    except ModuleNotFoundError:
        raise ConfigError(
            "CHARPENTE_DATABASE_URL is PostgreSQL: pip install 'charpente[postgres]'"
        ) from None
    engine = create_async_engine(
        url,
        pool_size=_PG_ENGINE_POOL,
        max_overflow=max(0, pool_size - _PG_ENGINE_POOL),
        pool_pre_ping=False,
        hide_parameters=True,  # bound values (write-only secrets included) stay out of logs
        connect_args=connect_args,
    )
    _, driver_args = engine.dialect.create_connect_args(engine.url)
    asyncpg_args = {k: v for k, v in driver_args.items() if k not in _SQLALCHEMY_ONLY}
    _postgres[engine.sync_engine] = PostgresOptions({**asyncpg_args, **connect_args}, pool_size)
    return engine
