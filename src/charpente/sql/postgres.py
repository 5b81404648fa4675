"""PostgreSQL without SQLAlchemy's execution layer: SQLAlchemy builds and compiles every
statement (once per shape), asyncpg prepares and runs the compiled text.

Owns the adapter's asyncpg pool and the codecs that give today's Python types: uuid as
canonical str, jsonb as parsed JSON; asyncpg already gives aware UTC datetimes and Decimal.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable, Hashable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import asyncpg
import sqlalchemy as sa
from sqlalchemy.sql.compiler import SQLCompiler

from charpente.compile.plan import Record
from charpente.sql.executor import Params
from charpente.sql.observe import observed

__all__ = ["MISMATCH", "UNREACHABLE", "PgCompiler", "PgExecutor", "PgPool", "PgStatement"]

_MAX_SHAPES = 1000  # compiled dynamic statements kept; beyond that the cache starts over

Processor = Callable[[Any], Any]

UNREACHABLE: tuple[type[BaseException], ...] = (
    asyncpg.exceptions.ConnectionDoesNotExistError,
    asyncpg.InterfaceError,
    asyncpg.TooManyConnectionsError,
    asyncpg.CannotConnectNowError,
    asyncpg.exceptions.PostgresConnectionError,
    # A pooled connection that has just received the server's termination notice, handed
    # out before asyncpg noticed: "cannot switch to state 15; another operation is in progress".
    asyncpg.exceptions.InternalClientError,
    asyncpg.exceptions.AdminShutdownError,
    asyncpg.exceptions.CrashShutdownError,
)
"""What asyncpg raises when the server cannot be reached or will not take the statement now."""

MISMATCH: tuple[type[BaseException], ...] = (
    asyncpg.exceptions.UndefinedTableError,
    asyncpg.exceptions.UndefinedColumnError,
    asyncpg.exceptions.InvalidCachedStatementError,
)
"""What asyncpg raises when the database lacks a table or column a statement names (or a
prepared statement outlived a change of its table)."""


@dataclass(frozen=True, slots=True)
class PgStatement:
    """One compiled statement: its SQL text and how to order and convert its parameters."""

    compiled: SQLCompiler
    sql: str
    names: tuple[str, ...]
    processors: Mapping[str, Processor]
    defaults: Mapping[str, Any]  # values built into the statement (`version + 1`)
    expanding: bool  # has IN lists whose length is only known with the values

    @classmethod
    def of(cls, compiled: SQLCompiler) -> PgStatement:
        processors: Any = compiled._bind_processors
        return cls(
            compiled,
            compiled.string,
            tuple(compiled.positiontup or ()),
            processors,
            {name: b.effective_value for name, b in compiled.binds.items() if not b.required},
            bool(compiled.post_compile_params or compiled.literal_execute_params),
        )

    def bind(self, params: Mapping[str, Any]) -> tuple[str, list[Any]]:
        """The SQL text and its positional arguments for `params` (over the defaults)."""
        if self.defaults:
            params = {**self.defaults, **params}
        if not self.expanding:
            return self.sql, _arguments(self.names, params, self.processors)
        # construct_expanded_state would rebuild the values from the compiled statement's
        # own cache key: expand the values of this call instead.
        state = self.compiled._process_parameters_for_postcompile(dict(params))
        processors = {**self.processors, **state.processors}
        return state.statement, _arguments(state.positiontup or (), state.parameters, processors)


def _arguments(
    names: Sequence[str], values: Mapping[str, Any], processors: Mapping[str, Any]
) -> list[Any]:
    arguments = []
    for name in names:
        value, process = values[name], processors.get(name)
        arguments.append(value if process is None or value is None else process(value))
    return arguments


class PgCompiler:
    """Compiled statements, each shape compiled once for the asyncpg dialect.

    A statement built once and reused (registered with `keep`) is found by identity; any
    other by SQLAlchemy's cache key, which leaves literal values out of the shape.
    """

    def __init__(self, dialect: sa.Dialect) -> None:
        self._dialect = dialect
        # Kept statements (held here, so their ids stay theirs) and their compiled forms by
        # parameter names; their number is bounded by their owners, not by _MAX_SHAPES.
        self._kept: dict[int, tuple[sa.Executable, dict[tuple[str, ...], PgStatement]]] = {}
        self._compiled: dict[Hashable, PgStatement] = {}

    def keep(self, stmt: sa.Executable) -> None:
        """Mark `stmt` as built once for the process: it is then found by identity."""
        self._kept[id(stmt)] = (stmt, {})

    def forget(self, stmt: sa.Executable) -> None:
        """Drop a kept statement and what was compiled for it (its owner let it go)."""
        self._kept.pop(id(stmt), None)

    def bind(self, stmt: sa.Executable, params: Params) -> tuple[str, list[Any]]:
        """The SQL text and positional arguments to run `stmt` with `params`."""
        keys = () if params is None else tuple(params)
        kept = self._kept.get(id(stmt))
        if kept is not None:
            found = kept[1].get(keys)
            if found is None:
                found = kept[1][keys] = PgStatement.of(self._compile(stmt, keys, None))
            return found.bind(params or {})
        cache_key: Any = stmt._generate_cache_key()  # type: ignore[attr-defined]
        if cache_key is None:  # not cacheable: compile for this call only
            return PgStatement.of(self._compile(stmt, keys, None)).bind(params or {})
        compiled = self._statement((cache_key.key, keys), stmt, keys, cache_key)
        values = compiled.compiled.construct_params(
            params, extracted_parameters=cache_key.bindparams
        )
        return compiled.bind(values)

    def _statement(
        self, key: Hashable, stmt: sa.Executable, keys: tuple[str, ...], cache_key: Any
    ) -> PgStatement:
        found = self._compiled.get(key)
        if found is None:
            if len(self._compiled) >= _MAX_SHAPES:
                self._compiled.clear()
            found = self._compiled[key] = PgStatement.of(self._compile(stmt, keys, cache_key))
        return found

    def _compile(self, stmt: sa.Executable, keys: tuple[str, ...], cache_key: Any) -> SQLCompiler:
        compiled: Any = stmt.compile(  # type: ignore[attr-defined]
            dialect=self._dialect, column_keys=sorted(keys), cache_key=cache_key
        )
        return compiled  # type: ignore[no-any-return]


class PgExecutor:
    """An Executor on one asyncpg connection (see charpente.sql.executor.Executor).

    A refused write raises SQLAlchemy's IntegrityError (asyncpg's error as its `orig`), as
    on SQLite, so that nothing outside this module needs asyncpg to recognise one.
    """

    def __init__(self, conn: asyncpg.Connection, compiler: PgCompiler) -> None:
        self.conn = conn
        self._compiler = compiler

    async def rows(self, stmt: sa.Executable, params: Params = None) -> list[Record]:
        return [dict(row) for row in await self._call(self.conn.fetch, stmt, params)]

    async def first(self, stmt: sa.Executable, params: Params = None) -> Record | None:
        row = await self._call(self.conn.fetchrow, stmt, params)
        return None if row is None else dict(row)

    async def scalar(self, stmt: sa.Executable, params: Params = None) -> Any:
        return await self._call(self.conn.fetchval, stmt, params)

    async def run(self, stmt: sa.Executable, params: Params = None) -> None:
        await self._call(self.conn.execute, stmt, params)

    async def _call(
        self, method: Callable[..., Awaitable[Any]], stmt: sa.Executable, params: Params
    ) -> Any:
        sql, args = self._compiler.bind(stmt, params)
        try:
            with observed("postgresql", stmt, lambda: sql):
                return await method(sql, *args)
        except asyncpg.IntegrityConstraintViolationError as exc:
            raise sa.exc.IntegrityError(sql, None, exc, hide_parameters=True) from exc


class PgPool:
    """The adapter's asyncpg connections, opened on first use and held up to `size`."""

    def __init__(self, connect: Mapping[str, Any], size: int) -> None:
        self._connect = dict(connect)
        self._size = size
        self._pool: asyncpg.Pool | None = None

    @asynccontextmanager
    async def acquire(self) -> AsyncIterator[asyncpg.Connection]:
        """A connection outside any transaction (each statement commits on its own)."""
        pool = self._pool or await self._open()
        async with pool.acquire() as conn:
            yield conn

    async def expire(self) -> None:
        """Replace the connections held: each is closed when next handed out or released."""
        if self._pool is not None:
            await self._pool.expire_connections()

    async def close(self) -> None:
        """Close every connection; the next `acquire` opens the pool again."""
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()

    async def _open(self) -> asyncpg.Pool:
        pool = await asyncpg.create_pool(
            min_size=0,
            max_size=self._size,
            init=_set_codecs,
            reset=_keep_session,
            **self._connect,
        )
        if self._pool is not None:  # another task opened it meanwhile: keep theirs
            await pool.close()
            return self._pool
        self._pool = pool
        return pool


async def _set_codecs(conn: asyncpg.Connection) -> None:
    """uuid as its canonical text (PostgreSQL prints lowercase); json and jsonb parsed.

    JSON parameters arrive already serialized by SQLAlchemy's bind processors."""
    await conn.set_type_codec("uuid", encoder=str, decoder=str, schema="pg_catalog")
    for name in ("json", "jsonb"):
        await conn.set_type_codec(name, encoder=str, decoder=json.loads, schema="pg_catalog")


async def _keep_session(conn: asyncpg.Connection) -> None:
    """A released connection keeps its session as is: the adapter never changes settings,
    and asyncpg has rolled back any open transaction before this runs. (The default reset
    costs a round trip per release.)"""
