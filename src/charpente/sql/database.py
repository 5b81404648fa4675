"""The Database port over SQLAlchemy Core: keyset pages, reads by id, and transactions.

Statements are built once per resource and reused, so compiled statements are cached.
SQLite runs them through SQLAlchemy: every write transaction holds the engine's writer
lock and opens with BEGIN IMMEDIATE; reads run without a lock (WAL), except on an
in-memory database. PostgreSQL runs them through asyncpg (charpente.sql.postgres).
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import sqlite3
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping, Sequence
from contextlib import (
    AbstractAsyncContextManager,
    asynccontextmanager,
    contextmanager,
    nullcontext,
)
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar, cast

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from charpente.compile.plan import (
    Delete,
    GetQuery,
    Insert,
    ListQuery,
    Page,
    Record,
    Update,
)
from charpente.design.expr import Expr
from charpente.design.model import Design, Resource
from charpente.errors import DesignMismatch, Unavailable
from charpente.runtime.events import Event
from charpente.runtime.ids import new_id
from charpente.runtime.metrics import PoolGate
from charpente.runtime.ports import IdempotentResponse, NewJob
from charpente.sql.engine import (
    SQLITE_BEGIN,
    is_memory_sqlite,
    is_sqlite,
    postgres_options,
    writer_lock,
)
from charpente.sql.executor import Executor, SaExecutor
from charpente.sql.groups import grouped_pages
from charpente.sql.history import EventStatements
from charpente.sql.integrity import INTEGRITY_ERRORS, IntegrityMap
from charpente.sql.pages import PageStatements, RuleStatements, where_parameters
from charpente.sql.schema import IDEMPOTENCY_TABLE, JOBS_TABLE, build_metadata

if TYPE_CHECKING:  # asyncpg is an extra: the PostgreSQL adapter is imported when it is used
    from charpente.sql.postgres import PgCompiler, PgPool

__all__ = ["SqlDatabase", "SqlTransaction", "canonical_id"]

IDEMPOTENCY_TTL = datetime.timedelta(hours=24)
_SYSTEM_UNSETTABLE = frozenset({"id", "version", "created_at"})
_RETRY_AFTER = {"Retry-After": "5"}
_MISMATCH_LOG_EVERY = 60.0  # seconds between two log lines about the same mismatch
_SQLITE_MISMATCH = ("no such column", "no such table", "has no column named")

logger = logging.getLogger("charpente.sql")
T = TypeVar("T")


class _Unreachable(Unavailable):
    """The database could not be reached (rather than busy): a read may try once more."""


@dataclass(frozen=True, slots=True)
class _Statements:
    """Everything prebuilt for one resource's table."""

    table: sa.Table
    by_id: sa.Select[Any]
    by_id_for_update: sa.Select[Any]
    by_ids: sa.Select[Any]
    insert: sa.Executable
    update: sa.Executable
    update_expected: sa.Executable
    delete: sa.Executable
    delete_expected: sa.Executable
    counters: Mapping[str, sa.Executable]


@dataclass(frozen=True, slots=True)
class _Catalog:
    """What a transaction needs from its database, shared by every transaction."""

    statements: Mapping[str, _Statements]
    integrity: IntegrityMap
    idempotency: sa.Table
    claim: Any  # dialect INSERT ... ON CONFLICT DO UPDATE WHERE expired ... RETURNING key
    stored: sa.Select[Any]
    save: sa.Update
    enqueue: sa.Insert  # a job, in the write's transaction

    def of(self, resource: str) -> _Statements:
        return self.statements[resource]

    def prebuilt(self) -> list[sa.Executable]:
        """Every statement built once for the process."""
        found: list[sa.Executable] = [self.claim, self.stored, self.save, self.enqueue]
        for st in self.statements.values():
            found += [st.by_id, st.by_id_for_update, st.by_ids, st.insert, st.update]
            found += [st.update_expected, st.delete, st.delete_expected, *st.counters.values()]
        return found


class SqlDatabase:
    """The Database port on SQLite or PostgreSQL (see sql.engine.create_engine)."""

    def __init__(self, engine: AsyncEngine, design: Design) -> None:
        self._engine = engine
        metadata = build_metadata(design)
        tables = {name: metadata.tables[name] for name in design.resources}
        self._all_tables: Mapping[str, sa.Table] = dict(metadata.tables)
        for_update = not is_sqlite(engine)  # SQLite holds the write lock already
        self._locks = for_update
        statements = {
            name: _statements(tables[name], resource, for_update)
            for name, resource in design.resources.items()
        }
        self._tables = tables
        self._events = EventStatements(metadata.tables, one_statement=not is_sqlite(engine))
        self._catalog = _catalog(engine, design, tables, metadata, statements)
        self._memory = is_memory_sqlite(engine)
        self._pg: tuple[PgPool, PgCompiler] | None = None
        # What a busy or unreachable database raises: answered 503, never a bug.
        self._unreachable: tuple[type[BaseException], ...] = (OSError,)
        # What a database that lacks a table or column of the design raises.
        self._mismatch: tuple[type[BaseException], ...] = ()
        self.mismatches = 0  # statements refused because the database lacks what they name
        self._mismatch_logged = -_MISMATCH_LOG_EVERY
        self._tasks: set[asyncio.Task[None]] = set()
        size = _pool_size(engine)
        if not is_sqlite(engine):
            from charpente.sql import postgres

            options = postgres_options(engine)
            size = options.pool_size
            self._pg = postgres.PgPool(options.connect, size), _compiler(engine, self._catalog)
            self._executor = postgres.PgExecutor
            self._unreachable += postgres.UNREACHABLE
            self._mismatch = postgres.MISMATCH
            for stmt in self._events.prebuilt():
                self._pg[1].keep(stmt)
        compiler = None if self._pg is None else self._pg[1]
        keep = None if compiler is None else compiler.keep
        forget = None if compiler is None else compiler.forget
        self._pages = PageStatements(tables, _page_columns, keep=keep, forget=forget)
        self._rules = RuleStatements(tables, keep=keep, forget=forget)
        # Callers wait here, first come first served, rather than in the pool's queue, which
        # lets newcomers overtake: with more requests than connections, some waited 100x
        # the median.
        self._gate = PoolGate(size)  # an asyncio.Semaphore that reports the pool's use
        self._size = size
        # The executor of the transaction this task holds, if any.
        self._active: ContextVar[Executor | None] = ContextVar("active", default=None)
        if is_sqlite(engine):
            self._reads = engine.execution_options(**{SQLITE_BEGIN: "none"})
            self._snapshots = engine
            self._writes = engine.execution_options(**{SQLITE_BEGIN: "immediate"})
        else:
            self._reads = engine.execution_options(isolation_level="AUTOCOMMIT")
            self._snapshots = engine.execution_options(isolation_level="REPEATABLE READ")
            self._writes = engine

    async def select_page(self, query: ListQuery) -> Page:
        statement, params = self._pages.of(query)

        async def read(ex: Executor) -> tuple[list[Record], int | None]:
            rows = await ex.rows(statement.rows, params)
            total = int(await ex.scalar(statement.count, params)) if query.count else None
            return rows, total

        rows, total = await self._read(read, snapshot=query.count)
        has_more = len(rows) > query.limit
        return Page(rows[: query.limit], has_more, total)

    async def select_one(self, query: GetQuery) -> Record | None:
        id = canonical_id(query.id)
        if id is None:
            return None
        params: dict[str, Any] = {"_id": id}
        if query.where is not None:
            stmt = self._rules.one(query.resource, query.fields, query.where, lock=False)
            params.update(where_parameters(query.where))
        else:
            st = self._catalog.of(query.resource)
            stmt = st.by_id if query.fields is None else _by_id(st.table, query.fields)
        return await self._read(lambda ex: ex.first(stmt, params))

    async def select_by_ids(
        self,
        resource: str,
        ids: Sequence[str],
        fields: tuple[str, ...] | None = None,
        where: Expr | None = None,
    ) -> list[Record]:
        wanted = sorted({c for c in map(canonical_id, ids) if c is not None})
        if not wanted:
            return []
        params: dict[str, Any] = {"_ids": wanted}
        st = self._catalog.of(resource)
        stmt = st.by_ids
        if where is not None:
            stmt = self._rules.ids(resource, fields, where)
            params.update(where_parameters(where))
        elif fields is not None:
            stmt = sa.select(*_columns(st.table, _wanted(fields, ()))).where(_ids_in(st.table))
        return await self._read(lambda ex: ex.rows(stmt, params))

    async def select_pages(
        self, query: ListQuery, via: str, parents: Sequence[str]
    ) -> dict[str, Page]:
        """`query`'s page for each parent id, among the rows whose `via` field holds it:
        one statement for them all (and one grouped count when `query.count`)."""
        wanted = sorted({c for c in map(canonical_id, parents) if c is not None})
        if not wanted:
            return {}
        table = self._tables[query.resource]
        built = grouped_pages(self._tables, query, via, wanted, _page_columns(table, query))

        async def read(ex: Executor) -> tuple[list[Record], list[Record]]:
            rows = await ex.rows(built.rows, built.params)
            counts = await ex.rows(built.count, built.params) if query.count else []
            return rows, counts

        rows, counts = await self._read(read, snapshot=query.count)
        totals = {str(r[via]): int(str(r["_n"])) for r in counts}
        grouped: dict[str, list[Record]] = {id: [] for id in wanted}
        for row in rows:
            grouped.setdefault(str(row[via]), []).append(row)
        return {
            id: Page(
                found[: query.limit],
                len(found) > query.limit,
                totals.get(id, 0) if query.count else None,
            )
            for id, found in grouped.items()
        }

    def transaction(self) -> AbstractAsyncContextManager[SqlTransaction]:
        return self._transaction()

    async def ping(self) -> None:
        async with self._reader() as ex:
            await ex.scalar(sa.select(1))

    def pool_use(self) -> tuple[int, int]:
        """Connections in use (or waited for by this process's gate), and the pool's size."""
        return self._size - self._gate._value, self._size

    async def history(
        self, resource: str, record_id: str, before: str | None, limit: int
    ) -> list[Event]:
        canonical = canonical_id(record_id)
        if canonical is None or (before is not None and canonical_id(before) is None):
            return []
        return await self._read(
            lambda ex: self._events.history(ex, resource, canonical, before, limit)
        )

    async def events_until(
        self, resource: str, record_id: str, at: datetime.datetime
    ) -> list[Event]:
        canonical = canonical_id(record_id)
        if canonical is None:
            return []
        return await self._read(lambda ex: self._events.until(ex, resource, canonical, at))

    async def events_after(self, resource: str, after: str, limit: int) -> list[Event]:
        canonical = canonical_id(after)
        if canonical is None:
            return []
        return await self._read(lambda ex: self._events.after(ex, resource, canonical, limit))

    async def close(self) -> None:
        if self._pg is not None:
            await self._pg[0].close()
        await self._engine.dispose()

    @asynccontextmanager
    async def writer(self) -> AsyncIterator[Executor]:
        """An executor inside one transaction (for the engine's own tables, like auth's)."""
        if self._active.get() is not None:
            # The gate (and SQLite's writer lock) is not reentrant: waiting would never end.
            raise RuntimeError("a transaction is already open in this task")
        with self._guard():
            async with self._open_transaction() as ex:
                token = self._active.set(ex)
                try:
                    yield ex
                finally:
                    self._active.reset(token)

    def reader(self) -> AbstractAsyncContextManager[Executor]:
        """An executor for reads outside any transaction (inside this task's, that one)."""
        return self._reader()

    def keep(self, stmt: sa.Executable) -> None:
        """Mark a statement as built once for the process (compiled once on PostgreSQL)."""
        if self._pg is not None:
            self._pg[1].keep(stmt)

    @property
    def locks(self) -> bool:
        """Whether writes lock rows (FOR UPDATE); SQLite's single writer needs none."""
        return self._locks

    @property
    def metadata_tables(self) -> Mapping[str, sa.Table]:
        return self._all_tables

    def transaction_on(self, ex: Executor) -> SqlTransaction:
        """The Transaction port over an executor this adapter opened with `writer()`."""
        return SqlTransaction(ex, self._catalog, self._rules, self._events, locks=self._locks)

    @asynccontextmanager
    async def _transaction(self) -> AsyncIterator[SqlTransaction]:
        async with self.writer() as ex:
            yield SqlTransaction(ex, self._catalog, self._rules, self._events, locks=self._locks)

    @asynccontextmanager
    async def _open_transaction(self) -> AsyncIterator[Executor]:
        if self._pg is not None:
            pool, compiler = self._pg
            async with self._gate, pool.acquire() as conn, conn.transaction():
                yield self._executor(conn, compiler)
            return
        lock = writer_lock(self._engine) if is_sqlite(self._engine) else nullcontext()
        async with lock, self._gate, self._writes.connect() as conn, conn.begin():
            yield SaExecutor(conn)

    @asynccontextmanager
    async def _reader(self, *, snapshot: bool = False) -> AsyncIterator[Executor]:
        """An executor for reads: each statement on its own, or one REPEATABLE READ
        snapshot for a page and its count. Inside this task's transaction, that one."""
        active = self._active.get()
        if active is not None:
            yield active
            return
        with self._guard():
            async with self._open_reader(snapshot) as ex:
                yield ex

    async def _read(self, work: Callable[[Executor], Awaitable[T]], *, snapshot: bool = False) -> T:
        """`work` on a reader; when the database could not be reached (a connection the
        server had just closed), once more on a fresh connection: a read is safe to repeat."""
        active = self._active.get()
        if active is not None:
            return await work(active)
        try:
            with self._guard():
                async with self._open_reader(snapshot) as ex:
                    return await work(ex)
        except _Unreachable:
            await self._renew_connections()
        with self._guard():
            async with self._open_reader(snapshot) as ex:
                return await work(ex)

    async def _renew_connections(self) -> None:
        """Make the pool open new connections rather than hand out those it holds."""
        if self._pg is not None:
            await self._pg[0].expire()

    @contextmanager
    def _guard(self) -> Iterator[None]:
        """Answer 503 with Retry-After when the database is locked past the busy timeout,
        cannot be reached, or lacks a table or column of the design (DesignMismatch);
        every other error goes through unchanged."""
        try:
            yield
        except Exception as exc:
            if _is_mismatch(exc, self._mismatch):
                self._saw_mismatch(exc)
                detail = (
                    "the database no longer matches the design (a table or column it uses "
                    "is missing); retry after the database is migrated"
                )
                raise DesignMismatch(detail=detail, headers=_RETRY_AFTER) from exc
            if not _is_busy(exc, self._unreachable):
                raise
            detail = "the database is busy or not reachable; retry shortly"
            if isinstance(_original(exc), self._unreachable):
                raise _Unreachable(detail=detail, headers=_RETRY_AFTER) from exc
            raise Unavailable(detail=detail, headers=_RETRY_AFTER) from exc

    def _saw_mismatch(self, exc: BaseException) -> None:
        """Count it, say it in the log (at most once a minute), and let the pool's
        connections go: their prepared statements describe the tables as they were."""
        self.mismatches += 1
        now = time.monotonic()
        if now - self._mismatch_logged >= _MISMATCH_LOG_EVERY:
            self._mismatch_logged = now
            reason = str(_original(exc)).splitlines()[0]
            logger.error(
                "the database no longer matches the design (%s): run `charpente migrate "
                "apply` to bring it back (this server then resumes by itself), or restart "
                "the server with the design the database has now",
                reason,
            )
        task = asyncio.get_running_loop().create_task(self._renew_connections())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    @asynccontextmanager
    async def _open_reader(self, snapshot: bool) -> AsyncIterator[Executor]:
        if self._pg is None:
            async with self._connection(self._snapshots if snapshot else self._reads) as conn:
                yield SaExecutor(conn)
            return
        pool, compiler = self._pg
        async with self._gate, pool.acquire() as conn:
            if not snapshot:
                yield self._executor(conn, compiler)
                return
            async with conn.transaction(isolation="repeatable_read"):
                yield self._executor(conn, compiler)

    @asynccontextmanager
    async def _connection(self, source: AsyncEngine) -> AsyncIterator[AsyncConnection]:
        """A connection for reads. In-memory SQLite has a single connection: reads then
        wait for the writer."""
        if not self._memory:
            async with self._gate, source.connect() as conn:
                yield conn
            return
        async with writer_lock(self._engine), source.connect() as conn:
            yield conn


class SqlTransaction:
    """The Transaction port on one connection inside BEGIN ... COMMIT."""

    def __init__(
        self,
        ex: Executor,
        catalog: _Catalog,
        rules: RuleStatements,
        events: EventStatements,
        *,
        locks: bool,
    ) -> None:
        self._ex = ex
        self._catalog = catalog
        self._rules = rules
        self._events = events
        self._locks = locks  # FOR UPDATE (SQLite's single writer needs none)

    @property
    def executor(self) -> Executor:
        """This transaction's executor (for the engine's own tables in the same write)."""
        return self._ex

    async def get(
        self, resource: str, id: str, *, for_update: bool = False, where: Expr | None = None
    ) -> Record | None:
        canonical = canonical_id(id)
        if canonical is None:
            return None
        if where is not None:
            stmt = self._rules.one(resource, None, where, lock=for_update and self._locks)
            return await self._ex.first(stmt, {"_id": canonical, **where_parameters(where)})
        st = self._catalog.of(resource)
        stmt = st.by_id_for_update if for_update else st.by_id
        return await self._ex.first(stmt, {"_id": canonical})

    async def matches(self, resource: str, id: str, where: Expr) -> bool:
        canonical = canonical_id(id)
        if canonical is None:
            return False
        stmt = self._rules.matches(resource, where)
        params = {"_id": canonical, **where_parameters(where)}
        return await self._ex.scalar(stmt, params) is not None

    async def insert(self, plan: Insert) -> Record:
        st = self._catalog.of(plan.resource)
        values = dict(plan.values)
        try:
            row = await self._ex.first(st.insert, values)
        except INTEGRITY_ERRORS as exc:
            integrity = self._catalog.integrity
            raise await integrity.write_error(self._ex, exc, plan.resource, values) from None
        assert row is not None  # INSERT ... RETURNING gives the row it inserted
        return row

    async def update(self, plan: Update) -> Record | None:
        id = canonical_id(plan.id)
        if id is None:
            return None
        st = self._catalog.of(plan.resource)
        params = {k: v for k, v in plan.changes.items() if k not in _SYSTEM_UNSETTABLE}
        params.setdefault("updated_at", datetime.datetime.now(datetime.UTC))
        if plan.expected_version is None:
            stmt, bound = st.update, {**params, "_id": id}
        else:
            stmt, bound = (
                st.update_expected,
                {**params, "_id": id, "_expected": plan.expected_version},
            )
        try:
            return await self._ex.first(stmt, bound)
        except INTEGRITY_ERRORS as exc:
            integrity = self._catalog.integrity
            raise await integrity.write_error(self._ex, exc, plan.resource, params) from None

    async def delete(self, plan: Delete) -> bool:
        id = canonical_id(plan.id)
        if id is None:
            return False
        st = self._catalog.of(plan.resource)
        bound: dict[str, object] = {"_id": id}
        if plan.expected_version is None:
            stmt = st.delete
        else:
            stmt, bound["_expected"] = st.delete_expected, plan.expected_version
        try:
            return await self._ex.first(stmt, bound) is not None
        except INTEGRITY_ERRORS as exc:
            integrity = self._catalog.integrity
            raise await integrity.delete_error(self._ex, exc, plan.resource, id) from None

    async def add_to_counter(self, resource: str, id: str, field: str, delta: int) -> None:
        canonical = canonical_id(id)
        if canonical is None:
            return
        stmt = self._catalog.of(resource).counters[field]
        await self._ex.run(stmt, {"_id": canonical, "_delta": delta})

    async def select_ids(self, resource: str, field: str, values: Sequence[str]) -> list[str]:
        table = self._catalog.of(resource).table
        column = table.c[field]
        query = sa.select(table.c.id).where(column.in_(sa.bindparam("_values", expanding=True)))
        rows = await self._ex.rows(query, {"_values": list(values)})
        return [str(row["id"]) for row in rows]

    async def count_by(self, resource: str, ids: Sequence[str], field: str) -> dict[str, int]:
        table = self._catalog.of(resource).table
        column = table.c[field]
        query = (
            sa.select(column, sa.func.count().label("_n"))
            .where(_ids_in(table), column.is_not(None))
            .group_by(column)
        )
        rows = await self._ex.rows(query, {"_ids": list(ids)})
        return {str(row[field]): cast(int, row["_n"]) for row in rows}

    async def append_event(self, event: Event, *, outbox: bool = False) -> None:
        await self._events.append(self._ex, event, outbox=outbox)

    async def enqueue_job(self, job: NewJob) -> str:
        id = new_id()
        row = {
            "id": id,
            "name": job.name,
            "args": job.args,
            "state": "queued",
            "attempts": 0,
            "max_attempts": job.max_attempts,
            "run_at": job.run_at,
            "created_at": job.created_at,
            "traceparent": job.traceparent,
        }
        await self._ex.run(self._catalog.enqueue, row)
        return id

    async def claim_idempotency_key(self, key: str, fingerprint: str) -> IdempotentResponse | None:
        now = datetime.datetime.now(datetime.UTC)
        params = {"key": key, "fingerprint": fingerprint, "created_at": now}
        claimed = await self._ex.first(
            self._catalog.claim, {**params, "_cutoff": now - IDEMPOTENCY_TTL}
        )
        if claimed is not None:
            return None
        row = await self._ex.first(self._catalog.stored, {"_key": key})
        assert row is not None  # the claim found the key taken, in this same transaction
        stored: Any = row  # fingerprint, status, body, location
        return IdempotentResponse(**stored)

    async def save_idempotent_response(self, key: str, response: IdempotentResponse) -> None:
        await self._ex.run(
            self._catalog.save,
            {
                "_key": key,
                "fingerprint": response.fingerprint,
                "status": response.status,
                "body": response.body,
                "location": response.location,
            },
        )


def _statements(table: sa.Table, resource: Resource, for_update: bool) -> _Statements:
    id_is = table.c.id == sa.bindparam("_id")
    matches = sa.and_(id_is, table.c.version == sa.bindparam("_expected"))
    columns = list(table.c)
    by_id = sa.select(*columns).where(id_is)
    update = sa.update(table).values(version=table.c.version + 1).returning(*columns)
    delete = sa.delete(table).returning(table.c.id)
    counters = {
        f.name: sa.update(table)
        .where(id_is)
        .values({f.name: table.c[f.name] + sa.bindparam("_delta")})
        for f in resource.counters
    }
    return _Statements(
        table=table,
        by_id=by_id,
        by_id_for_update=by_id.with_for_update() if for_update else by_id,
        by_ids=sa.select(*columns).where(_ids_in(table)),
        insert=sa.insert(table).returning(*columns),
        update=update.where(id_is),
        update_expected=update.where(matches),
        delete=delete.where(id_is),
        delete_expected=delete.where(matches),
        counters=counters,
    )


def _catalog(
    engine: AsyncEngine,
    design: Design,
    tables: Mapping[str, sa.Table],
    metadata: sa.MetaData,
    statements: Mapping[str, _Statements],
) -> _Catalog:
    idem = metadata.tables[IDEMPOTENCY_TABLE]
    key_is = idem.c.key == sa.bindparam("_key")
    return _Catalog(
        statements=statements,
        integrity=IntegrityMap(design, tables, engine.dialect),
        idempotency=idem,
        claim=_claim(idem, is_sqlite(engine)),
        stored=sa.select(idem.c.fingerprint, idem.c.status, idem.c.body, idem.c.location).where(
            key_is
        ),
        save=sa.update(idem).where(key_is),
        enqueue=sa.insert(metadata.tables[JOBS_TABLE]),
    )


def _claim(idem: sa.Table, on_sqlite: bool) -> Any:
    """Insert the key; take it over when it expired or its holder never saved an answer.

    On PostgreSQL a concurrent holder's uncommitted row makes this wait for its outcome.
    """
    insert = sqlite.insert(idem) if on_sqlite else postgresql.insert(idem)
    free = sa.or_(idem.c.created_at < sa.bindparam("_cutoff"), idem.c.status.is_(None))
    return insert.on_conflict_do_update(
        index_elements=[idem.c.key],
        set_={
            "fingerprint": insert.excluded.fingerprint,
            "status": None,
            "body": None,
            "location": None,
            "created_at": insert.excluded.created_at,
        },
        where=free,
    ).returning(idem.c.key)


def _compiler(engine: AsyncEngine, catalog: _Catalog) -> PgCompiler:
    from charpente.sql.postgres import PgCompiler

    compiler = PgCompiler(engine.dialect)
    for stmt in catalog.prebuilt():
        compiler.keep(stmt)
    return compiler


def _wanted(fields: tuple[str, ...] | None, extra: tuple[str, ...]) -> set[str] | None:
    return None if fields is None else {"id", *fields, *extra}


def _columns(table: sa.Table, names: set[str] | None) -> list[sa.Column[Any]]:
    return list(table.c) if names is None else [c for c in table.c if c.name in names]


def _by_id(table: sa.Table, fields: tuple[str, ...]) -> sa.Select[Any]:
    return sa.select(*_columns(table, _wanted(fields, ()))).where(table.c.id == sa.bindparam("_id"))


def _ids_in(table: sa.Table) -> sa.ColumnElement[bool]:
    return table.c.id.in_(sa.bindparam("_ids", expanding=True))


def _page_columns(table: sa.Table, query: ListQuery) -> list[sa.Column[Any]]:
    """What a page reads: the asked fields, the sort keys (for the cursor) and id."""
    return _columns(table, _wanted(query.fields, tuple(k.field for k in query.sort)))


def _pool_size(engine: AsyncEngine) -> int:
    """How many connections the engine's pool holds (1 for a single shared connection)."""
    size = getattr(engine.pool, "size", None)
    return max(1, size()) if callable(size) else 1


def _original(exc: BaseException) -> BaseException:
    """The driver's error under SQLAlchemy's wrapper, if any."""
    if isinstance(exc, sa.exc.DBAPIError) and exc.orig is not None:
        return exc.orig
    return exc


def _is_mismatch(exc: BaseException, mismatch: tuple[type[BaseException], ...]) -> bool:
    """Whether the database refused a statement for a table or column it does not have."""
    original = _original(exc)
    if isinstance(original, sqlite3.OperationalError):
        return any(words in str(original) for words in _SQLITE_MISMATCH)
    return isinstance(original, mismatch)


def _is_busy(exc: BaseException, unreachable: tuple[type[BaseException], ...]) -> bool:
    if isinstance(exc, sa.exc.DBAPIError) and exc.orig is not None:
        if exc.connection_invalidated:
            return True
        exc = exc.orig
    if isinstance(exc, sqlite3.OperationalError):
        return "database is locked" in str(exc)
    return isinstance(exc, unreachable)


def canonical_id(value: str) -> str | None:
    """The canonical lowercase form of a UUID, or None when `value` is not one."""
    if len(value) > 45:  # the longest accepted spelling: urn:uuid: + 36
        return None
    try:
        return str(uuid.UUID(value))
    except ValueError:
        return None
