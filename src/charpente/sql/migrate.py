"""Migrations: the steps from the live database to the design's tables, classified and run.

Alembic compares and runs the operations; this module classifies them, refuses unsafe ones,
keeps the history table, and never touches a table charpente did not create.
"""

from __future__ import annotations

import dataclasses
import datetime
import enum
import json
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractAsyncContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field as dc_field
from typing import Any

import sqlalchemy as sa
from alembic.autogenerate import produce_migrations
from alembic.migration import MigrationContext
from alembic.operations import Operations, ops
from sqlalchemy.ext.asyncio import AsyncEngine

from charpente.design.diff import Change, design_from_json, design_to_json, diff_designs
from charpente.design.model import Design, Field, Kind
from charpente.errors import MigrationError
from charpente.sql.engine import SQLITE_BEGIN, is_sqlite, writer_lock
from charpente.sql.schema import NAMING, UtcDateTime, build_metadata

__all__ = [
    "HISTORY_TABLE",
    "MigrationPlan",
    "MigrationStep",
    "Safety",
    "apply_migration",
    "database_is_current",
    "plan_migration",
]

HISTORY_TABLE = "charpente_migrations"
_ENGINE_PREFIX = "charpente_"
_IGNORED_TABLES = frozenset({"alembic_version"})
_LOCK_KEY = 0x63686172_70656E74  # "charpent": the advisory lock every migration takes


class Safety(enum.StrEnum):
    """How risky a step is for the data already stored."""

    SAFE = "safe"
    BACKFILL = "needs a backfill"
    DESTRUCTIVE = "drops data"


@dataclass(frozen=True)
class MigrationStep:
    """One change to the database (or, with no operation, to the design only)."""

    description: str
    safety: Safety
    breaking: bool = False
    operation: ops.MigrateOperation | None = dc_field(default=None, compare=False, repr=False)
    table: str | None = dc_field(default=None, compare=False, repr=False)  # altered in place
    blocker: str | None = dc_field(default=None, compare=False, repr=False)  # why it cannot run
    backfill: sa.Update | None = dc_field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class MigrationPlan:
    """The steps that bring a database to a design, in the order they run."""

    steps: tuple[MigrationStep, ...]
    snapshot: str = dc_field(default="", compare=False, repr=False)  # the design, as JSON
    is_recorded: bool = dc_field(default=True, compare=False, repr=False)  # snapshot is latest

    @property
    def is_empty(self) -> bool:
        return not self.steps

    @property
    def has_destructive(self) -> bool:
        return any(s.safety is Safety.DESTRUCTIVE for s in self.steps)

    @property
    def only_safe(self) -> bool:
        return all(s.safety is Safety.SAFE for s in self.steps)


async def plan_migration(engine: AsyncEngine, design: Design) -> MigrationPlan:
    """What `apply_migration` would run now, without changing anything."""
    async with engine.connect() as conn:
        return await conn.run_sync(_plan, design)


async def database_is_current(engine: AsyncEngine, design: Design) -> bool:
    """Whether the database already matches the design (no step left to run)."""
    return (await plan_migration(engine, design)).is_empty


async def apply_migration(
    engine: AsyncEngine,
    design: Design,
    *,
    allow_destructive: bool = False,
    only_safe: bool = False,
) -> MigrationPlan:
    """Run every step in one transaction and record it; return the plan that ran.

    Raises MigrationError, before anything changes, when a step is refused or cannot run.
    """
    async with _writer(engine), engine.connect() as conn:
        conn = await conn.execution_options(**{SQLITE_BEGIN: "immediate"})
        return await conn.run_sync(_apply, design, allow_destructive, only_safe)


def _writer(engine: AsyncEngine) -> AbstractAsyncContextManager[Any]:
    """SQLite has one writer: hold the engine's writer lock while the migration runs."""
    return writer_lock(engine) if is_sqlite(engine) else nullcontext()


# --- applying -----------------------------------------------------------------------------


def _apply(
    conn: sa.Connection, design: Design, allow_destructive: bool, only_safe: bool
) -> MigrationPlan:
    with _foreign_keys_deferred(conn), conn.begin():
        _begin_sqlite_transaction(conn)
        _lock_migrations(conn)
        plan = _plan(conn, design)
        _refuse(plan, allow_destructive=allow_destructive, only_safe=only_safe)
        _run_steps(conn, plan.steps)
        _check_foreign_keys(conn)
        if plan.steps or not plan.is_recorded:
            _record(conn, plan)
    return plan


def _refuse(plan: MigrationPlan, *, allow_destructive: bool, only_safe: bool) -> None:
    if only_safe and not plan.only_safe:
        unsafe = [s for s in plan.steps if s.safety is not Safety.SAFE]
        raise MigrationError(
            f"{_listing(unsafe)} not safe to run automatically; "
            "review them with `charpente migrate plan` and run `charpente migrate apply`"
        )
    if plan.has_destructive and not allow_destructive:
        lossy = [s for s in plan.steps if s.safety is Safety.DESTRUCTIVE]
        raise MigrationError(
            f"{_listing(lossy)} would drop data; "
            "pass --allow-destructive (allow_destructive=True) to run them"
        )
    for step in plan.steps:
        if step.blocker is not None:
            raise MigrationError(f"cannot {step.description}: {step.blocker}")


def _listing(steps: Sequence[MigrationStep]) -> str:
    names = "; ".join(s.description for s in steps)
    return f"these steps are ({names})," if len(steps) > 1 else f"this step ({names}) is"


def _run_steps(conn: sa.Connection, steps: Sequence[MigrationStep]) -> None:
    operations = Operations(MigrationContext.configure(conn))
    batches = _sqlite_batches(steps) if conn.dialect.name == "sqlite" else None
    for index, step in enumerate(steps):
        if step.operation is None or (batches is not None and index in batches.skipped):
            continue
        try:
            if batches is not None and index in batches.groups:
                _run_batch(operations, batches.groups[index])
            else:
                operations.invoke(step.operation)
        except sa.exc.DBAPIError as exc:
            raise MigrationError(f"{step.description} failed: {exc.orig}") from exc
    for step in steps:
        if step.backfill is not None:
            conn.execute(step.backfill)


@dataclass
class _Batches:
    groups: dict[int, list[MigrationStep]]  # first step's index -> steps on one table
    skipped: set[int]  # the other steps' indexes (run with their group)


def _sqlite_batches(steps: Sequence[MigrationStep]) -> _Batches:
    """Group consecutive in-place steps on one table: SQLite alters by recreating it."""
    batches = _Batches({}, set())
    start: int | None = None
    for index, step in enumerate(steps):
        if step.table is None or step.operation is None:
            start = None
        elif start is not None and steps[start].table == step.table:
            batches.groups[start].append(step)
            batches.skipped.add(index)
        else:
            start = index
            batches.groups[index] = [step]
    return batches


def _run_batch(operations: Operations, steps: list[MigrationStep]) -> None:
    table = steps[0].table
    assert table is not None  # grouped by table
    recreate = _recreate_mode(steps)
    with operations.batch_alter_table(table, recreate=recreate, naming_convention=NAMING) as batch:
        for step in steps:
            assert step.operation is not None  # grouped steps all carry one
            batch.invoke(step.operation)


def _recreate_mode(steps: list[MigrationStep]) -> Any:
    for step in steps:
        op = step.operation
        if isinstance(op, ops.AddColumnOp) and _lacks_value(op.column):
            return "always"  # SQLite cannot ADD a NOT NULL column without a default
    return "auto"


def _lacks_value(column: sa.Column[Any]) -> bool:
    return not column.nullable and column.server_default is None


@contextmanager
def _foreign_keys_deferred(conn: sa.Connection) -> Iterator[None]:
    """On SQLite, turn foreign keys off (outside any transaction) while tables are recreated."""
    if conn.dialect.name != "sqlite":
        yield
        return
    raw = conn.connection.dbapi_connection
    assert raw is not None  # a checked-out connection
    cursor = raw.cursor()
    try:
        cursor.execute("PRAGMA foreign_keys")
        row = cursor.fetchone()
        was_on = bool(row is not None and row[0])
        cursor.execute("PRAGMA foreign_keys = OFF")
        try:
            yield
        finally:
            if was_on:
                cursor.execute("PRAGMA foreign_keys = ON")
    finally:
        cursor.close()


def _begin_sqlite_transaction(conn: sa.Connection) -> None:
    """Make sure SQLite DDL runs inside the transaction (the driver only begins before DML)."""
    if conn.dialect.name != "sqlite":
        return
    driver = conn.connection.driver_connection
    if not getattr(driver, "in_transaction", True):
        conn.exec_driver_sql("BEGIN")


def _lock_migrations(conn: sa.Connection) -> None:
    """On PostgreSQL, one migration at a time: processes starting together wait their turn."""
    if conn.dialect.name == "postgresql":
        conn.execute(sa.select(sa.func.pg_advisory_xact_lock(_LOCK_KEY)))


def _check_foreign_keys(conn: sa.Connection) -> None:
    if conn.dialect.name != "sqlite":
        return
    broken = conn.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
    if broken:
        tables = sorted({row[0] for row in broken})
        raise MigrationError(
            f"the migration would leave references to missing records in {', '.join(tables)}"
        )


def _record(conn: sa.Connection, plan: MigrationPlan) -> None:
    history = _history_table(sa.MetaData())
    conn.execute(
        history.insert().values(
            applied_at=datetime.datetime.now(datetime.UTC),
            design=plan.snapshot,
            steps=json.dumps([s.description for s in plan.steps], ensure_ascii=False),
        )
    )


# --- planning -----------------------------------------------------------------------------


def _plan(conn: sa.Connection, design: Design) -> MigrationPlan:
    previous, recorded = _latest_snapshot(conn)
    metadata = build_metadata(design)
    _history_table(metadata)
    known = set(previous.resources) if previous is not None else set()
    context = MigrationContext.configure(
        conn,
        opts={"target_metadata": metadata, "include_name": _include_name(metadata, known)},
    )
    with warnings.catch_warnings():
        # Resources may refer to each other; such references are added after the tables.
        warnings.filterwarnings("ignore", "Cannot correctly sort tables", sa.exc.SAWarning)
        script = produce_migrations(context, metadata)
    assert script.upgrade_ops is not None  # produce_migrations always fills it
    operations = _defer_foreign_keys(script.upgrade_ops.ops, conn.dialect.name)
    changes = diff_designs(previous, design)
    facts = _Facts(conn, design, metadata, operations)
    dropped = {op.table_name for op in operations if isinstance(op, ops.DropTableOp)}
    steps = [
        _step(facts, op, table)
        for op, table in _flatten(operations)
        if table not in dropped  # a dropped table's indexes go with it
    ]
    steps = [_with_breaking(s, changes) for s in steps]
    steps.extend(_design_only_steps(changes, steps))
    snapshot = design_to_json(design)
    return MigrationPlan(tuple(steps), snapshot, is_recorded=snapshot == recorded)


def _latest_snapshot(conn: sa.Connection) -> tuple[Design | None, str | None]:
    if not sa.inspect(conn).has_table(HISTORY_TABLE):
        return None, None
    history = _history_table(sa.MetaData())
    query = sa.select(history.c.design).order_by(history.c.id.desc()).limit(1)
    text = conn.execute(query).scalar_one_or_none()
    if text is None:
        return None, None
    try:
        return design_from_json(text), text
    except (ValueError, KeyError, TypeError) as exc:
        raise MigrationError(
            f"the last design recorded in {HISTORY_TABLE} cannot be read ({exc}); "
            "it was written by another version of charpente"
        ) from exc


def _history_table(metadata: sa.MetaData) -> sa.Table:
    return sa.Table(
        HISTORY_TABLE,
        metadata,
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("applied_at", UtcDateTime(), nullable=False),
        sa.Column("design", sa.Text(), nullable=False),
        sa.Column("steps", sa.Text(), nullable=False),  # JSON list of step descriptions
    )


def _include_name(metadata: sa.MetaData, known: set[str]) -> Callable[..., bool]:
    """Compare only tables the design has, or the last applied design had."""

    def include(name: str | None, type_: str, parent_names: object) -> bool:
        if type_ != "table" or name is None:
            return True
        if name in metadata.tables:
            return True
        if name in _IGNORED_TABLES or name.startswith(_ENGINE_PREFIX):
            return False
        return name in known

    return include


def _defer_foreign_keys(
    operations: Sequence[ops.MigrateOperation], dialect: str
) -> list[ops.MigrateOperation]:
    """Create new tables first and add their references to later ones afterwards.

    SQLite accepts a reference to a table that does not exist yet; PostgreSQL does not.
    """
    if dialect == "sqlite":
        return list(operations)
    later = {op.table_name for op in operations if isinstance(op, ops.CreateTableOp)}
    ordered: list[ops.MigrateOperation] = []
    deferred: list[ops.MigrateOperation] = []
    for op in operations:
        if isinstance(op, ops.CreateTableOp):
            later.discard(op.table_name)  # a reference to itself is fine
            op, references = _without_references_to(op, later)
            deferred.extend(references)
        ordered.append(op)
    return ordered + deferred


def _without_references_to(
    op: ops.CreateTableOp, tables: set[str]
) -> tuple[ops.CreateTableOp, list[ops.MigrateOperation]]:
    late = [
        c
        for c in op.columns
        if isinstance(c, sa.ForeignKeyConstraint) and c.referred_table.name in tables
    ]
    if not late:
        return op, []
    local = {name for fk in late for name in fk.column_keys}
    items = [
        _bare_column(c) if isinstance(c, sa.Column) and c.name in local else c
        for c in op.columns
        if all(c is not fk for fk in late)
    ]
    table_op = ops.CreateTableOp(op.table_name, items, _constraints_included=True)
    return table_op, [ops.CreateForeignKeyOp.from_constraint(fk) for fk in late]


def _bare_column(column: sa.Column[Any]) -> sa.Column[Any]:
    return sa.Column(
        column.name, column.type, nullable=column.nullable, primary_key=column.primary_key
    )


def _flatten(
    operations: Sequence[ops.MigrateOperation],
) -> Iterator[tuple[ops.MigrateOperation, str | None]]:
    for op in operations:
        if isinstance(op, ops.ModifyTableOps):
            for inner in op.ops:
                yield inner, op.table_name
        else:
            yield op, None


class _Facts:
    """What classifying needs to know about the database and the design."""

    def __init__(
        self,
        conn: sa.Connection,
        design: Design,
        metadata: sa.MetaData,
        operations: Sequence[ops.MigrateOperation],
    ) -> None:
        self.conn = conn
        self.design = design
        self.metadata = metadata
        self.new_tables = {op.table_name for op in operations if isinstance(op, ops.CreateTableOp)}
        self.new_nullable = {
            (op.table_name, op.column.name)
            for op, _ in _flatten(operations)
            if isinstance(op, ops.AddColumnOp) and op.column.nullable
        }
        self._has_rows: dict[str, bool] = {}

    def has_rows(self, table: str) -> bool:
        if table in self.new_tables:
            return False
        if table not in self._has_rows:
            query = sa.select(sa.literal(1)).select_from(sa.table(table)).limit(1)
            self._has_rows[table] = self.conn.execute(query).first() is not None
        return self._has_rows[table]

    def null_count(self, table: str, column: str) -> int:
        t = sa.table(table, sa.column(column))
        query = sa.select(sa.func.count()).select_from(t).where(t.c[column].is_(None))
        return int(self.conn.execute(query).scalar_one())

    def field(self, table: str, column: str) -> Field | None:
        resource = self.design.resource(table)
        return resource.field(column) if resource is not None else None


def _step(facts: _Facts, op: ops.MigrateOperation, table: str | None) -> MigrationStep:
    for op_type, classify in _CLASSIFIERS:
        if isinstance(op, op_type):
            step = classify(facts, op)
            return MigrationStep(
                step.description,
                step.safety,
                operation=step.operation or op,
                table=table,
                blocker=step.blocker,
                backfill=step.backfill,
            )
    return MigrationStep(f"{type(op).__name__} on {table}", Safety.BACKFILL, operation=op)


def _create_table(facts: _Facts, op: Any) -> MigrationStep:
    return MigrationStep(f"create table {op.table_name}", Safety.SAFE)


def _drop_table(facts: _Facts, op: Any) -> MigrationStep:
    return MigrationStep(f"drop table {op.table_name} (its rows are lost)", Safety.DESTRUCTIVE)


def _add_column(facts: _Facts, op: Any) -> MigrationStep:
    table, column = op.table_name, op.column
    f = facts.field(table, column.name)
    default = None if column.nullable else _literal_default(f, column, facts.conn.dialect)
    step = _new_column_step(facts, table, column, f, default)
    if default is None and column.server_default is not None:
        default = column.server_default.arg
    # Only the column: its unique and foreign key constraints come as steps of their own.
    bare = sa.Column(column.name, column.type, nullable=column.nullable, server_default=default)
    return dataclasses.replace(step, operation=ops.AddColumnOp(table, bare))


def _new_column_step(
    facts: _Facts,
    table: str,
    column: sa.Column[Any],
    f: Field | None,
    default: sa.TextClause | None,
) -> MigrationStep:
    kind = str(f.kind) if f is not None else _sql_type(column, facts.conn.dialect)
    where = f"{table}.{column.name}"
    if column.nullable:
        return MigrationStep(f"add column {where} ({kind}, nullable)", Safety.SAFE)
    if f is not None and f.kind is Kind.COUNT:
        return MigrationStep(
            f"add column {where} ({kind}, counted from existing rows)",
            Safety.SAFE,
            backfill=_count_backfill(facts.metadata, table, f),
        )
    if default is not None:
        description = f"add column {where} ({kind}, required, existing rows get {default.text})"
        return MigrationStep(description, Safety.SAFE)
    description = f"add column {where} ({kind}, required)"
    if not facts.has_rows(table):
        return MigrationStep(description, Safety.SAFE)
    blocker = (
        f"{table} has rows and {column.name} has no default; give the field a default, "
        "or add it optional, fill it, then make it required"
    )
    return MigrationStep(description, Safety.BACKFILL, blocker=blocker)


def _drop_column(facts: _Facts, op: Any) -> MigrationStep:
    where = f"{op.table_name}.{op.column_name}"
    return MigrationStep(f"drop column {where} (its values are lost)", Safety.DESTRUCTIVE)


def _alter_column(facts: _Facts, op: Any) -> MigrationStep:
    where = f"{op.table_name}.{op.column_name}"
    if op.modify_type is not None:
        old = _sql_type_name(op.existing_type, facts.conn.dialect)
        new = _sql_type_name(op.modify_type, facts.conn.dialect)
        return MigrationStep(f"change type of {where} from {old} to {new}", Safety.DESTRUCTIVE)
    if op.modify_nullable is True:
        return MigrationStep(f"make {where} optional (nullable)", Safety.SAFE)
    if op.modify_nullable is False:
        missing = facts.null_count(op.table_name, op.column_name)
        description = f"make {where} required (not null)"
        if not missing:
            return MigrationStep(description, Safety.BACKFILL)
        blocker = f"{missing} rows have no value; fill them first"
        return MigrationStep(description, Safety.BACKFILL, blocker=blocker)
    return MigrationStep(f"alter column {where}", Safety.SAFE)


def _create_index(facts: _Facts, op: Any) -> MigrationStep:
    columns = ", ".join(_column_label(c) for c in op.columns)
    unique = "unique " if op.unique else ""
    description = f"create {unique}index {op.index_name} on {op.table_name} ({columns})"
    risky = op.unique and _may_conflict(facts, op.table_name, _column_names(op.columns))
    return MigrationStep(description, Safety.BACKFILL if risky else Safety.SAFE)


def _drop_index(facts: _Facts, op: Any) -> MigrationStep:
    return MigrationStep(f"drop index {op.index_name}", Safety.SAFE)


def _add_unique(facts: _Facts, op: Any) -> MigrationStep:
    columns = list(op.columns)
    description = f"add unique constraint on {op.table_name} ({', '.join(columns)})"
    risky = _may_conflict(facts, op.table_name, columns)
    return MigrationStep(description, Safety.BACKFILL if risky else Safety.SAFE)


def _add_foreign_key(facts: _Facts, op: Any) -> MigrationStep:
    local = ", ".join(op.local_cols)
    description = f"add foreign key {op.source_table}.{local} -> {op.referent_table}"
    risky = _may_conflict(facts, op.source_table, list(op.local_cols))
    return MigrationStep(description, Safety.BACKFILL if risky else Safety.SAFE)


def _drop_constraint(facts: _Facts, op: Any) -> MigrationStep:
    return MigrationStep(f"drop constraint {op.constraint_name} on {op.table_name}", Safety.SAFE)


_CLASSIFIERS: tuple[tuple[type[Any], Callable[[_Facts, Any], MigrationStep]], ...] = (
    (ops.CreateTableOp, _create_table),
    (ops.DropTableOp, _drop_table),
    (ops.AddColumnOp, _add_column),
    (ops.DropColumnOp, _drop_column),
    (ops.AlterColumnOp, _alter_column),
    (ops.CreateIndexOp, _create_index),
    (ops.DropIndexOp, _drop_index),
    (ops.CreateUniqueConstraintOp, _add_unique),
    (ops.CreateForeignKeyOp, _add_foreign_key),
    (ops.DropConstraintOp, _drop_constraint),
)


def _may_conflict(facts: _Facts, table: str, columns: list[str]) -> bool:
    """Whether existing rows could violate a new constraint (new nullable columns cannot)."""
    if all((table, c) in facts.new_nullable for c in columns):
        return False
    return facts.has_rows(table)


def _count_backfill(metadata: sa.MetaData, table: str, f: Field) -> sa.Update | None:
    if f.count is None:
        return None
    target = metadata.tables[table]
    source = metadata.tables[f.count.resource]
    counted = (
        sa.select(sa.func.count())
        .select_from(source)
        .where(source.c[f.count.field] == target.c.id)
        .scalar_subquery()
    )
    return target.update().values({f.name: counted})


def _literal_default(
    f: Field | None, column: sa.Column[Any], dialect: sa.Dialect
) -> sa.TextClause | None:
    """The design's literal default as SQL (rendered by SQLAlchemy), or None."""
    if f is None or f.default is None or f.default.now or f.default.expr is not None:
        return None
    if f.default.value is None:
        return None
    value, type_ = f.default.value, column.type
    if f.kind is Kind.JSON:
        value, type_ = json.dumps(value, ensure_ascii=False), sa.Text()
    try:
        literal = sa.literal(value, type_=type_)
        rendered = literal.compile(dialect=dialect, compile_kwargs={"literal_binds": True})
    except (sa.exc.CompileError, NotImplementedError, TypeError, ValueError):
        return None
    return sa.text(str(rendered))


def _sql_type(column: sa.Column[Any], dialect: sa.Dialect) -> str:
    return _sql_type_name(column.type, dialect)


def _sql_type_name(type_: Any, dialect: sa.Dialect) -> str:
    if type_ is None:
        return "unknown"
    compiled = str(sa.types.to_instance(type_).compile(dialect=dialect))
    return compiled.split(" COLLATE ")[0].lower()


def _column_label(column: Any) -> str:
    if isinstance(column, str):
        return column
    if isinstance(column, sa.UnaryExpression) and column.modifier is sa.sql.operators.desc_op:
        return f"{_column_label(column.element)} desc"
    return str(getattr(column, "name", column))


def _column_names(columns: Sequence[Any]) -> list[str]:
    return [_column_label(c).removesuffix(" desc") for c in columns]


# --- the design side ----------------------------------------------------------------------


def _step_key(step: MigrationStep) -> tuple[str, str | None] | None:
    op = step.operation
    if isinstance(op, ops.CreateTableOp | ops.DropTableOp):
        return op.table_name, None
    if isinstance(op, ops.AddColumnOp):
        return op.table_name, op.column.name
    if isinstance(op, ops.DropColumnOp | ops.AlterColumnOp):
        return op.table_name, op.column_name
    if isinstance(op, ops.CreateUniqueConstraintOp):
        return op.table_name, op.columns[0] if len(op.columns) == 1 else None
    if isinstance(op, ops.CreateForeignKeyOp):
        return op.source_table, op.local_cols[0] if len(op.local_cols) == 1 else None
    return None


def _with_breaking(step: MigrationStep, changes: list[Change]) -> MigrationStep:
    key = _step_key(step)
    if key is None or not any((c.resource, c.field) == key and c.breaking for c in changes):
        return step
    return dataclasses.replace(step, breaking=True)


def _design_only_steps(
    changes: list[Change], steps: list[MigrationStep]
) -> Iterator[MigrationStep]:
    """Breaking changes the database cannot show (an enum lost a value, a length shrank)."""
    covered = {_step_key(s) for s in steps}
    for change in changes:
        if change.breaking and (change.resource, change.field) not in covered:
            where = change.resource if change.field is None else f"{change.resource}.{change.field}"
            description = f"{where}: {change.what} (no database change)"
            yield MigrationStep(description, Safety.SAFE, breaking=True)
