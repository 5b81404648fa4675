"""The IndexPlanner port: the database's own planner, asked about indexes that do not exist.

Each shape is turned back into the statement the engine runs for it (sql.pages builds it,
with placeholder values: the planner is asked for a generic plan, where values play no
part). Then:

- PostgreSQL: hypothetical indexes with hypopg, all on one dedicated connection, removed
  with `hypopg_reset()` in `finally`. Plans are generic (`PREPARE` with `plan_cache_mode =
  force_generic_plan`, since PostgreSQL 15 has no `EXPLAIN (GENERIC_PLAN)`), which is also
  what asyncpg's prepared statements run once PostgreSQL settles on a plan. Tables whose
  statistics are stale are analyzed first. A candidate counts when the plan uses it and its
  cost is at most half the cost without it.
- SQLite: the `.expert` method. The live file is opened read-only; its schema is copied to
  an in-memory scratch database with every candidate index, `sqlite_stat1` is written from
  a sample of the real rows, and the planner's choice is read back from EXPLAIN QUERY PLAN.
  No index is ever built on the live file.
"""

from __future__ import annotations

import asyncio
import datetime
import json
import math
import sqlite3
from collections.abc import Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.sql import operators

from charpente.compile.advice import IndexCandidate
from charpente.compile.plan import ListQuery, SortKey
from charpente.design.expr import Call, Compare, Expr, ListOf, Literal, Name
from charpente.design.model import Design, IndexColumn
from charpente.errors import CharpenteError
from charpente.runtime.advice import MIN_SAVING, Planned, Suggestion
from charpente.sql.engine import is_sqlite, postgres_options
from charpente.sql.pages import PageStatements, RuleStatements, where_parameters
from charpente.sql.schema import EVENTS_TABLE, build_metadata

__all__ = ["AdviceError", "PgPlanner", "SqlitePlanner", "index_ddl", "planner_for"]

SAMPLE_ROWS = 10_000  # rows read per table to estimate sqlite_stat1
_PLACEHOLDER = Literal(0)
_STALE_SHARE = 0.1  # ANALYZE a table when this share of its rows changed since the last one


class AdviceError(CharpenteError):
    """The planner cannot be asked (hypopg missing, no database file)."""


class _Shapes:
    """Statements for shapes, on the design's tables."""

    def __init__(self, engine: AsyncEngine, design: Design) -> None:
        metadata = build_metadata(design)
        self.engine = engine
        self.events = metadata.tables[EVENTS_TABLE]
        self.tables = {name: metadata.tables[name] for name in design.resources}
        self._pages = PageStatements(self.tables, lambda table, query: list(table.c))
        self._rules = RuleStatements(self.tables)

    def existing(self) -> dict[str, list[tuple[IndexColumn, ...]]]:
        return {name: _indexes(table) for name, table in self.tables.items()}

    def columns(self) -> dict[str, list[str]]:
        return {name: [c.name for c in table.c] for name, table in self.tables.items()}

    async def writes_since(self, resource: str, since: datetime.datetime) -> int:
        """Writes of `resource` since `since`: every write records one event (its history)."""
        events = self.events
        stmt = (
            sa.select(sa.func.count())
            .select_from(events)
            .where(events.c.resource == resource, events.c.at >= since)
        )
        async with self.engine.connect() as conn:
            return int(await conn.scalar(stmt) or 0)

    def statement(self, spec: Mapping[str, Any]) -> sa.Select[Any]:
        """The statement the engine runs for the shape, its IN lists two values long."""
        resource, kind = str(spec["resource"]), str(spec["kind"])
        where = None if spec.get("where") is None else _expr(spec["where"])
        if kind == "list":
            sort = tuple(SortKey(str(f), bool(d)) for f, d in spec.get("sort") or [])
            after = tuple(_PLACEHOLDER.value for _ in sort) if spec.get("keyset") else None
            query = ListQuery(resource, where, sort or (SortKey("id"),), 20, after)
            page, params = self._pages.of(query)
            return page.rows.params(**params)
        if where is None:
            where = Literal(True)
        params = where_parameters(where)
        if kind == "ids":
            return self._rules.ids(resource, None, where).params(_ids=["a", "b"], **params)
        return self._rules.one(resource, None, where, lock=False).params(_id="a", **params)


class PgPlanner:
    """The IndexPlanner port on PostgreSQL, with hypopg."""

    dialect = "postgresql"

    def __init__(self, engine: AsyncEngine, design: Design) -> None:
        self._connect = postgres_options(engine).connect
        self._shapes = _Shapes(engine, design)
        self._conn: Any = None
        self._hypopg = ""
        self._analyzed: set[str] = set()
        self._names = iter(range(1_000_000))

    def existing(self) -> dict[str, list[tuple[IndexColumn, ...]]]:
        return self._shapes.existing()

    def columns(self) -> dict[str, list[str]]:
        return self._shapes.columns()

    async def open(self) -> None:
        import asyncpg

        self._conn = await asyncpg.connect(**self._connect)
        schema = await self._conn.fetchval(
            "SELECT extnamespace::regnamespace::text FROM pg_extension WHERE extname = 'hypopg'"
        )
        if schema is None:
            await self._conn.close()
            raise AdviceError(
                "charpente advise needs the hypopg extension: install it "
                "(apt-get install postgresql-15-hypopg) and run CREATE EXTENSION hypopg"
            )
        self._hypopg = f"{schema}."
        await self._conn.execute("SET plan_cache_mode = force_generic_plan")

    async def close(self) -> None:
        if self._conn is not None:
            await self._conn.close()

    async def plan(self, spec: Mapping[str, Any], candidates: Sequence[IndexCandidate]) -> Planned:
        stmt = self._shapes.statement(spec)
        await self._analyze_if_stale(_tables_of(stmt))
        compiled = stmt.compile(dialect=_PG_DIALECT, compile_kwargs={"render_postcompile": True})
        sql, count = compiled.string, len(compiled.positiontup or ())
        before = await self._explain(sql, count)
        cost_before = _cost(before)
        used = []
        try:
            for candidate in candidates:
                name = await self._hypothetical(candidate)
                after = await self._explain(sql, count)
                await self._conn.execute(f"SELECT {self._hypopg}hypopg_reset()")
                cost_after = _cost(after)
                if name in _index_names(after) and cost_after <= cost_before * (1 - MIN_SAVING):
                    used.append(Suggestion(candidate, cost_before, cost_after))
        finally:
            await self._conn.execute(f"SELECT {self._hypopg}hypopg_reset()")
        best = sorted(used, key=lambda s: (s.cost_after or 0.0, len(s.candidate.columns)))
        return Planned(tuple(_one_per_table(best)), _outline(before), tuple(_flags(before)))

    async def writes_since(self, resource: str, since: datetime.datetime) -> int:
        return await self._shapes.writes_since(resource, since)

    async def _hypothetical(self, candidate: IndexCandidate) -> str:
        ddl = index_ddl(candidate, _PG_DIALECT)
        row = await self._conn.fetchrow(
            f"SELECT indexname FROM {self._hypopg}hypopg_create_index($1)",  # noqa: S608 (the extension's schema, from the catalog)
            ddl,
        )
        return str(row["indexname"])

    async def _explain(self, sql: str, count: int) -> dict[str, Any]:
        name = f"charpente_advise_{next(self._names)}"
        await self._conn.execute(f"PREPARE {name} AS {sql}")
        try:
            nulls = ", ".join(["NULL"] * count)
            arguments = f"({nulls})" if count else ""
            text = await self._conn.fetchval(f"EXPLAIN (FORMAT JSON) EXECUTE {name}{arguments}")
        finally:
            await self._conn.execute(f"DEALLOCATE {name}")
        plan: dict[str, Any] = json.loads(text)[0]["Plan"]
        return plan

    async def _analyze_if_stale(self, tables: Sequence[str]) -> None:
        for table in tables:
            if table in self._analyzed:
                continue
            self._analyzed.add(table)
            row = await self._conn.fetchrow(
                "SELECT n_live_tup, n_mod_since_analyze, "
                "coalesce(last_analyze, last_autoanalyze) AS analyzed "
                "FROM pg_stat_user_tables WHERE relid = to_regclass($1)",
                table,
            )
            stale = row is None or row["analyzed"] is None
            if row is not None and not stale:
                stale = row["n_mod_since_analyze"] > _STALE_SHARE * max(row["n_live_tup"], 1000)
            if stale:
                quoted = _PG_DIALECT.identifier_preparer.quote(table)
                await self._conn.execute(f"ANALYZE {quoted}")


class SqlitePlanner:
    """The IndexPlanner port on SQLite: the `.expert` method on a scratch copy of the schema."""

    dialect = "sqlite"

    def __init__(self, engine: AsyncEngine, design: Design) -> None:
        path = engine.url.database
        if not path or path == ":memory:":
            raise AdviceError("charpente advise needs a database file, not an in-memory one")
        self._path = path
        self._shapes = _Shapes(engine, design)
        self._live: sqlite3.Connection | None = None
        self._stats: dict[tuple[str, tuple[str, ...]], str] = {}

    def existing(self) -> dict[str, list[tuple[IndexColumn, ...]]]:
        return self._shapes.existing()

    def columns(self) -> dict[str, list[str]]:
        return self._shapes.columns()

    async def open(self) -> None:
        try:
            self._live = await asyncio.to_thread(_read_only, self._path)
        except sqlite3.Error as exc:
            raise AdviceError(f"cannot open {self._path} read-only: {exc}") from None

    async def close(self) -> None:
        if self._live is not None:
            self._live.close()

    async def plan(self, spec: Mapping[str, Any], candidates: Sequence[IndexCandidate]) -> Planned:
        return await asyncio.to_thread(self._plan, spec, candidates)

    async def writes_since(self, resource: str, since: datetime.datetime) -> int:
        return await self._shapes.writes_since(resource, since)

    def _plan(self, spec: Mapping[str, Any], candidates: Sequence[IndexCandidate]) -> Planned:
        assert self._live is not None
        stmt = self._shapes.statement(spec)
        compiled = stmt.compile(
            dialect=_SQLITE_DIALECT, compile_kwargs={"render_postcompile": True}
        )
        sql, count = compiled.string, len(compiled.positiontup or ())
        scratch = sqlite3.connect(":memory:")
        try:
            names = self._scratch(scratch, candidates)
            before = _sqlite_plan(scratch, sql, count, drop=list(names))
            after = _sqlite_plan(scratch, sql, count)
        finally:
            scratch.close()
        used = [Suggestion(names[n]) for n in names if any(_uses(line, n) for line in after)]
        scans = [f"SQLite still scans {line[5:]}" for line in after if line[:5] == "SCAN "]
        return Planned(tuple(_one_per_table(used)), "; ".join(before), () if used else tuple(scans))

    def _scratch(
        self, scratch: sqlite3.Connection, candidates: Sequence[IndexCandidate]
    ) -> dict[str, IndexCandidate]:
        assert self._live is not None
        schema = self._live.execute(
            "SELECT type, name, tbl_name, sql FROM sqlite_schema "
            "WHERE sql IS NOT NULL AND name NOT LIKE 'sqlite_%' ORDER BY type = 'index'"
        ).fetchall()
        for _type, _name, _table, sql in schema:
            scratch.execute(sql)
        names = {}
        for i, candidate in enumerate(candidates):
            name = f"charpente_candidate_{i}"
            scratch.execute(index_ddl(candidate, _SQLITE_DIALECT, name))
            names[name] = candidate
        scratch.execute("ANALYZE")  # creates sqlite_stat1, empty: the tables are
        scratch.execute("DELETE FROM sqlite_stat1")
        indexes = scratch.execute(
            "SELECT name, tbl_name FROM sqlite_schema WHERE type = 'index'"
        ).fetchall()
        tables = {t for _, t in indexes if t in self._shapes.tables}
        for table in tables:
            stat = self._stat(table, ())
            scratch.execute("INSERT INTO sqlite_stat1 VALUES (?, NULL, ?)", (table, stat))
        for name, table in indexes:
            if table not in tables:
                continue
            columns = tuple(r[2] for r in scratch.execute(f"PRAGMA index_info({_q(name)})"))
            if None in columns:
                continue
            stat = self._stat(table, columns)
            scratch.execute("INSERT INTO sqlite_stat1 VALUES (?, ?, ?)", (table, name, stat))
        scratch.execute("ANALYZE sqlite_schema")  # the planner loads the written statistics
        return names

    def _stat(self, table: str, columns: tuple[str, ...]) -> str:
        """sqlite_stat1's `N a1 a2 …`: rows, then rows per distinct value of each prefix,
        estimated from the first SAMPLE_ROWS rows."""
        key = (table, columns)
        if key not in self._stats:
            t = self._shapes.tables[table]
            parts = [str(max(self._scalar(sa.select(sa.func.count()).select_from(t)), 1))]
            sample = sa.select(t).limit(SAMPLE_ROWS).subquery()
            taken = max(self._scalar(sa.select(sa.func.count()).select_from(sample)), 1)
            for i in range(1, len(columns) + 1):
                prefix = sa.select(*(sample.c[c] for c in columns[:i])).distinct().subquery()
                distinct = max(self._scalar(sa.select(sa.func.count()).select_from(prefix)), 1)
                parts.append(str(max(1, math.ceil(taken / distinct))))
            self._stats[key] = " ".join(parts)
        return self._stats[key]

    def _scalar(self, stmt: sa.Select[Any]) -> int:
        assert self._live is not None
        compiled = stmt.compile(dialect=_SQLITE_DIALECT, compile_kwargs={"literal_binds": True})
        return int(self._live.execute(compiled.string).fetchone()[0])


def planner_for(engine: AsyncEngine, design: Design) -> PgPlanner | SqlitePlanner:
    """The planner of the engine's dialect (call `open()` before use, `close()` after)."""
    if is_sqlite(engine):
        return SqlitePlanner(engine, design)
    return PgPlanner(engine, design)


_PG_DIALECT = postgresql.asyncpg.dialect()  # type: ignore[no-untyped-call]
_SQLITE_DIALECT = sqlite.dialect()


def _read_only(path: str) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False)


def _uses(line: str, index: str) -> bool:
    return f"INDEX {index} " in f"{line} "


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _sqlite_plan(
    scratch: sqlite3.Connection, sql: str, count: int, drop: Sequence[str] = ()
) -> list[str]:
    """EXPLAIN QUERY PLAN's lines (without the candidates in `drop`, in a savepoint)."""
    scratch.execute("SAVEPOINT plan")
    try:
        for name in drop:
            scratch.execute(f"DROP INDEX {_q(name)}")
        rows = scratch.execute(f"EXPLAIN QUERY PLAN {sql}", [None] * count).fetchall()
    finally:
        scratch.execute("ROLLBACK TO plan")
        scratch.execute("RELEASE plan")
    return [str(r[3]) for r in rows]


def index_ddl(candidate: IndexCandidate, dialect: sa.Dialect, name: str | None = None) -> str:
    """`CREATE INDEX [name] ON table (columns)`, identifiers quoted for `dialect`."""
    quote = dialect.identifier_preparer.quote
    columns = ", ".join(
        f"{quote(c.field)} DESC" if c.descending else quote(c.field) for c in candidate.columns
    )
    named = f" {quote(name)}" if name else ""
    return f"CREATE INDEX{named} ON {quote(candidate.resource)} ({columns})"


def _indexes(table: sa.Table) -> list[tuple[IndexColumn, ...]]:
    found: list[tuple[IndexColumn, ...]] = [tuple(IndexColumn(c.name) for c in table.primary_key)]
    for constraint in table.constraints:
        if isinstance(constraint, sa.UniqueConstraint):
            found.append(tuple(IndexColumn(c.name) for c in constraint.columns))
    for column in table.c:
        if column.unique:
            found.append((IndexColumn(column.name),))
    for index in table.indexes:
        found.append(tuple(_index_column(e) for e in index.expressions))
    return found


def _index_column(expression: Any) -> IndexColumn:
    if isinstance(expression, sa.UnaryExpression):
        descending = expression.modifier is operators.desc_op
        return IndexColumn(str(getattr(expression.element, "name", "")), descending)
    return IndexColumn(str(getattr(expression, "name", "")))


def _tables_of(stmt: sa.Select[Any]) -> list[str]:
    names = {t.name for t in stmt.get_final_froms() if isinstance(t, sa.Table)}
    names |= {
        str(getattr(a.element, "name", ""))
        for a in sa.sql.visitors.iterate(stmt)
        if isinstance(a, sa.Alias)
    }
    return sorted(n for n in names if n)


def _expr(node: Any) -> Expr:
    """A shape's tree back to an expression, each value a placeholder."""
    from charpente.design.expr import And, Not, Or

    match node:
        case ["and", left, right]:
            return And(_expr(left), _expr(right))
        case ["or", left, right]:
            return Or(_expr(left), _expr(right))
        case ["not", operand]:
            return Not(_expr(operand))
        case ["cmp", op, left, right]:
            return Compare(str(op), _expr(left), _expr(right))
        case ["exists", target, inner]:
            return Call("exists", (Name((str(target),)), _expr(inner)))
        case ["name", dotted]:
            return Name(tuple(str(dotted).split(".")))
        case ["list"]:
            return ListOf((_PLACEHOLDER, _PLACEHOLDER))
        case ["null"]:
            return Literal(None)
        case ["true"]:
            return Literal(True)
        case ["false"]:
            return Literal(False)
    return _PLACEHOLDER


def _cost(plan: Mapping[str, Any]) -> float:
    return float(plan.get("Total Cost", 0.0))


def _walk(plan: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    nodes = [plan]
    for child in plan.get("Plans", ()):
        nodes += _walk(child)
    return nodes


def _index_names(plan: Mapping[str, Any]) -> set[str]:
    return {str(n["Index Name"]) for n in _walk(plan) if "Index Name" in n}


def _outline(plan: Mapping[str, Any]) -> str:
    parts = []
    for node in _walk(plan):
        label = str(node.get("Node Type", "?"))
        on = node.get("Index Name") or node.get("Relation Name")
        parts.append(f"{label} on {on}" if on else label)
    return " > ".join(parts)


def _flags(plan: Mapping[str, Any]) -> list[str]:
    notes = []
    for node in _walk(plan):
        if "hashed" in str(node.get("Subplan Name", "")):
            notes.append(
                "the rule's exists() is planned as a hashed SubPlan: it reads every row the "
                "caller's part matches, on each query (no index changes that)"
            )
    return notes


def _one_per_table(used: Sequence[Suggestion]) -> list[Suggestion]:
    """The best suggestion for each table (the first one given)."""
    seen: set[str] = set()
    kept = []
    for suggestion in used:
        if suggestion.candidate.resource not in seen:
            seen.add(suggestion.candidate.resource)
            kept.append(suggestion)
    return kept
