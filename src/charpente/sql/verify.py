"""`advise --verify`: each suggestion built for real, where it harms nothing, and timed.

The shape runs with values sampled from the table (the shape log keeps none), before and
after the index exists: p50 and p99 over the runs, and the index's size.

- SQLite: inside one write transaction on the live file (`BEGIN IMMEDIATE`), rolled back
  at the end, so the index never outlives the measure; writers wait while it runs.
- PostgreSQL: in a scratch database made for the purpose (the tables the shape reads,
  their indexes, and a sample of their rows), dropped at the end; the live database is
  only read.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from charpente.compile.advice import IndexCandidate
from charpente.compile.plan import ListQuery, SortKey
from charpente.design.expr import And, Call, Compare, Expr, ListOf, Literal, Name, Not, Or, Value
from charpente.design.model import Design
from charpente.sql.advisor import index_ddl
from charpente.sql.engine import SQLITE_BEGIN, create_engine, is_sqlite, postgres_options
from charpente.sql.pages import PageStatements
from charpente.sql.schema import build_metadata

__all__ = ["SAMPLE_ROWS", "IndexVerifier"]

SAMPLE_ROWS = 100_000  # rows copied per table into PostgreSQL's scratch database


class IndexVerifier:
    """Times shapes before and after a suggested index (see the module's docstring)."""

    def __init__(self, engine: AsyncEngine, design: Design, runs: int = 15) -> None:
        self._engine = engine
        metadata = build_metadata(design)
        self._tables = {name: metadata.tables[name] for name in design.resources}
        self._pages = PageStatements(self._tables, lambda table, query: list(table.c))
        self._runs = runs

    async def verify(self, spec: Mapping[str, Any], candidate: IndexCandidate) -> dict[str, object]:
        """{p50_ms_before, p99_ms_before, p50_ms_after, p99_ms_after, index_bytes}."""
        tables = sorted({str(spec["resource"]), candidate.resource, *_targets(spec.get("where"))})
        async with self._scratch(tables) as conn:
            queries = await self._queries(conn, spec)
            before = await self._timed(conn, queries)
            size = await self._build(conn, candidate)
            after = await self._timed(conn, queries)
        return {
            "p50_ms_before": _quantile(before, 0.5),
            "p99_ms_before": _quantile(before, 0.99),
            "p50_ms_after": _quantile(after, 0.5),
            "p99_ms_after": _quantile(after, 0.99),
            "index_bytes": size,
        }

    @asynccontextmanager
    async def _scratch(self, tables: Sequence[str]) -> AsyncIterator[AsyncConnection]:
        if is_sqlite(self._engine):
            writes = self._engine.execution_options(**{SQLITE_BEGIN: "immediate"})
            async with writes.connect() as conn:
                await conn.begin()
                try:
                    yield conn
                finally:
                    await conn.rollback()  # the index is gone with the transaction
            return
        async with _scratch_database(self._engine) as scratch:
            async with scratch.begin() as conn:
                for name in tables:
                    await conn.run_sync(_create_alone, self._tables[name])
            await _copy_sample(self._engine, scratch, [self._tables[n] for n in tables])
            async with scratch.connect() as conn:
                await conn.execution_options(isolation_level="AUTOCOMMIT")
                yield conn

    async def _queries(self, conn: AsyncConnection, spec: Mapping[str, Any]) -> list[ListQuery]:
        resource = str(spec["resource"])
        names = [resource, *_targets(spec.get("where"))]
        samples = {n: await _sample(conn, self._tables[n], self._runs) for n in set(names)}
        sort = tuple(SortKey(str(f), bool(d)) for f, d in spec.get("sort") or [("id", False)])
        queries = []
        for i in range(self._runs):
            rows = {n: (s[i % len(s)] if s else {}) for n, s in samples.items()}
            where = None if spec.get("where") is None else _expr(spec["where"], rows, resource)
            after = None
            if spec.get("keyset") and rows[resource]:
                after = tuple(rows[resource].get(k.field) for k in sort)
            queries.append(ListQuery(resource, where, sort, 20, after))
        return queries

    async def _timed(self, conn: AsyncConnection, queries: Sequence[ListQuery]) -> list[float]:
        timings = []
        for query in [queries[0], *queries]:  # the first run warms the caches, uncounted
            statement, params = self._pages.of(query)
            start = time.perf_counter()
            await conn.execute(statement.rows, params)
            timings.append((time.perf_counter() - start) * 1000)
        return timings[1:]

    async def _build(self, conn: AsyncConnection, candidate: IndexCandidate) -> int | None:
        name = f"charpente_verify_{uuid.uuid4().hex[:12]}"
        ddl = index_ddl(candidate, conn.dialect, name)
        if is_sqlite(self._engine):
            pages = await conn.exec_driver_sql("PRAGMA page_count")
            before = int(pages.scalar_one())
            await conn.exec_driver_sql(ddl)
            pages = await conn.exec_driver_sql("PRAGMA page_count")
            size = await conn.exec_driver_sql("PRAGMA page_size")
            return (int(pages.scalar_one()) - before) * int(size.scalar_one())
        await conn.exec_driver_sql(ddl)
        await conn.exec_driver_sql(
            f"ANALYZE {conn.dialect.identifier_preparer.quote(candidate.resource)}"
        )
        found = await conn.execute(
            sa.text("SELECT pg_relation_size(to_regclass(:name))"), {"name": name}
        )
        return int(found.scalar_one())


@asynccontextmanager
async def _scratch_database(engine: AsyncEngine) -> AsyncIterator[AsyncEngine]:
    import asyncpg

    options = dict(postgres_options(engine).connect)
    options.pop("server_settings", None)  # the scratch database uses its public schema
    name = f"charpente_verify_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(**options)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        url = engine.url.set(database=name).render_as_string(hide_password=False)
        scratch = create_engine(url)
        try:
            yield scratch
        finally:
            await scratch.dispose()
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


def _quote(dialect: sa.Dialect, name: str) -> str:
    return dialect.identifier_preparer.quote(name)


def _create_alone(conn: sa.Connection, table: sa.Table) -> None:
    """The table and its indexes, without foreign keys (the tables they name may be absent)."""
    conn.execute(sa.schema.CreateTable(table, include_foreign_key_constraints=[]))
    for index in table.indexes:
        conn.execute(sa.schema.CreateIndex(index))


async def _copy_sample(live: AsyncEngine, scratch: AsyncEngine, tables: Sequence[sa.Table]) -> None:
    async with live.connect() as source, scratch.begin() as target:
        for table in tables:
            rows = (await source.execute(sa.select(table).limit(SAMPLE_ROWS))).mappings().all()
            for start in range(0, len(rows), 5000):
                await target.execute(
                    sa.insert(table), [dict(r) for r in rows[start : start + 5000]]
                )
            await target.exec_driver_sql(
                f"ANALYZE {scratch.dialect.identifier_preparer.quote(table.name)}"
            )


async def _sample(conn: AsyncConnection, table: sa.Table, count: int) -> list[dict[str, Any]]:
    stmt = sa.select(table).order_by(sa.func.random()).limit(count)
    return [dict(r) for r in (await conn.execute(stmt)).mappings().all()]


def _targets(node: Any) -> list[str]:
    """The resources an exists() of the tree reads."""
    match node:
        case ["exists", target, inner]:
            return [str(target), *_targets(inner)]
        case [_, *children]:
            return [t for c in children if isinstance(c, list) for t in _targets(c)]
    return []


def _expr(node: Any, rows: Mapping[str, Mapping[str, Any]], table: str) -> Expr:
    """The shape's tree with values taken from sampled rows (of `table`, or of the table an
    exists() reads)."""
    match node:
        case ["and", left, right]:
            return And(_expr(left, rows, table), _expr(right, rows, table))
        case ["or", left, right]:
            return Or(_expr(left, rows, table), _expr(right, rows, table))
        case ["not", operand]:
            return Not(_expr(operand, rows, table))
        case ["exists", target, inner]:
            return Call("exists", (Name((str(target),)), _expr(inner, rows, str(target))))
        case ["cmp", op, ["name", name], right]:
            value = rows.get(table, {}).get(str(name))
            return Compare(str(op), Name(tuple(str(name).split("."))), _literal(op, right, value))
        case ["cmp", op, left, right]:
            return Compare(str(op), _expr(left, rows, table), _expr(right, rows, table))
        case ["name", dotted]:
            return Name(tuple(str(dotted).split(".")))
    return Literal(None)


def _literal(op: str, node: Any, value: Value) -> Expr:
    match node:
        case ["null"]:
            return Literal(None)
        case ["true"]:
            return Literal(True)
        case ["false"]:
            return Literal(False)
        case ["list"]:
            return ListOf((Literal(value),))
        case ["name", dotted]:
            return Name(tuple(str(dotted).split(".")))
    if op == "~" and isinstance(value, str):
        return Literal(value[len(value) // 2 :][:3])
    return Literal(value)


def _quantile(timings: Sequence[float], q: float) -> float:
    ordered = sorted(timings)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 3) if ordered else 0.0
