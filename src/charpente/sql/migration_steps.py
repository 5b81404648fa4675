"""Migration steps: Alembic operations classified by what they risk, and described.

A step says what it does in a sentence, how safe it is for the data already stored
(safe, needs a backfill, drops data) and whether it breaks v1 clients.
"""

from __future__ import annotations

import dataclasses
import enum
import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field as dc_field
from typing import Any

import sqlalchemy as sa
from alembic.operations import ops

from charpente.design.diff import Change
from charpente.design.model import Design, Field, Kind

__all__ = [
    "Deferred",
    "Facts",
    "MigrationPlan",
    "MigrationStep",
    "Safety",
    "classify_operation",
    "design_only_steps",
    "flatten",
    "with_breaking",
]


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
    # On a live PostgreSQL table: the lock the plain form would hold, and the form that runs.
    lock: str | None = dc_field(default=None, compare=False, repr=False)
    # Run after the commit instead of `operation`, one statement at a time (PostgreSQL).
    after: tuple[Deferred, ...] = dc_field(default=(), compare=False, repr=False)


@dataclass(frozen=True)
class Deferred:
    """A statement run outside the migration's transaction (see sql/expansion.py)."""

    sql: str
    exclusive: bool = False  # waits for a lock writers would queue behind: bounded, retried
    cleanup: str | None = None  # run before a retry (an interrupted index build)


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


def flatten(
    operations: Sequence[ops.MigrateOperation],
) -> Iterator[tuple[ops.MigrateOperation, str | None]]:
    for op in operations:
        if isinstance(op, ops.ModifyTableOps):
            for inner in op.ops:
                yield inner, op.table_name
        else:
            yield op, None


class Facts:
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
            for op, _ in flatten(operations)
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


def classify_operation(facts: Facts, op: ops.MigrateOperation, table: str | None) -> MigrationStep:
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


def _create_table(facts: Facts, op: Any) -> MigrationStep:
    return MigrationStep(f"create table {op.table_name}", Safety.SAFE)


def _drop_table(facts: Facts, op: Any) -> MigrationStep:
    return MigrationStep(f"drop table {op.table_name} (its rows are lost)", Safety.DESTRUCTIVE)


def _add_column(facts: Facts, op: Any) -> MigrationStep:
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
    facts: Facts,
    table: str,
    column: sa.Column[Any],
    f: Field | None,
    default: sa.TextClause | None,
) -> MigrationStep:
    kind = str(f.kind) if f is not None else _sql_type(column, facts.conn.dialect)
    where = f"{table}.{column.name}"
    if column.nullable:
        return _new_optional_column(facts, table, column, f, f"add column {where} ({kind}")
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


def _new_optional_column(
    facts: Facts, table: str, column: sa.Column[Any], f: Field | None, start: str
) -> MigrationStep:
    """An optional column: existing rows get the field's constant default (one UPDATE in
    the migration's transaction), or keep null, as the step says."""
    if f is None or f.default is None:
        return MigrationStep(f"{start}, nullable)", Safety.SAFE)
    shown = _literal_default(f, column, facts.conn.dialect)
    if shown is None:  # now, auth.id, an expression: nothing to give rows written before
        return MigrationStep(f"{start}, nullable, existing rows keep null)", Safety.SAFE)
    target = facts.metadata.tables[table]
    backfill = target.update().values(
        {f.name: sa.bindparam("v", f.default.value, target.c[f.name].type)}
    )
    return MigrationStep(
        f"{start}, nullable, existing rows get {shown.text})", Safety.SAFE, backfill=backfill
    )


def _drop_column(facts: Facts, op: Any) -> MigrationStep:
    where = f"{op.table_name}.{op.column_name}"
    return MigrationStep(f"drop column {where} (its values are lost)", Safety.DESTRUCTIVE)


def _alter_column(facts: Facts, op: Any) -> MigrationStep:
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
        rows = "1 row has" if missing == 1 else f"{missing} rows have"
        blocker = f"{rows} no value; fill them first"
        return MigrationStep(description, Safety.BACKFILL, blocker=blocker)
    return MigrationStep(f"alter column {where}", Safety.SAFE)


def _create_index(facts: Facts, op: Any) -> MigrationStep:
    columns = ", ".join(_column_label(c) for c in op.columns)
    unique = "unique " if op.unique else ""
    description = f"create {unique}index {op.index_name} on {op.table_name} ({columns})"
    risky = op.unique and _may_conflict(facts, op.table_name, _column_names(op.columns))
    return MigrationStep(description, Safety.BACKFILL if risky else Safety.SAFE)


def _drop_index(facts: Facts, op: Any) -> MigrationStep:
    return MigrationStep(f"drop index {op.index_name}", Safety.SAFE)


def _add_unique(facts: Facts, op: Any) -> MigrationStep:
    columns = list(op.columns)
    description = f"add unique constraint on {op.table_name} ({', '.join(columns)})"
    risky = _may_conflict(facts, op.table_name, columns)
    return MigrationStep(description, Safety.BACKFILL if risky else Safety.SAFE)


def _add_foreign_key(facts: Facts, op: Any) -> MigrationStep:
    local = ", ".join(op.local_cols)
    description = f"add foreign key {op.source_table}.{local} -> {op.referent_table}"
    risky = _may_conflict(facts, op.source_table, list(op.local_cols))
    return MigrationStep(description, Safety.BACKFILL if risky else Safety.SAFE)


def _drop_constraint(facts: Facts, op: Any) -> MigrationStep:
    return MigrationStep(f"drop constraint {op.constraint_name} on {op.table_name}", Safety.SAFE)


_CLASSIFIERS: tuple[tuple[type[Any], Callable[[Facts, Any], MigrationStep]], ...] = (
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


def _may_conflict(facts: Facts, table: str, columns: list[str]) -> bool:
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


def with_breaking(step: MigrationStep, changes: list[Change]) -> MigrationStep:
    key = _step_key(step)
    if key is None or not any((c.resource, c.field) == key and c.breaking for c in changes):
        return step
    return dataclasses.replace(step, breaking=True)


def design_only_steps(changes: list[Change], steps: list[MigrationStep]) -> Iterator[MigrationStep]:
    """Breaking changes the database cannot show (an enum lost a value, a length shrank)."""
    covered = {_step_key(s) for s in steps}
    for change in changes:
        if change.breaking and (change.resource, change.field) not in covered:
            where = change.resource if change.field is None else f"{change.resource}.{change.field}"
            description = f"{where}: {change.what} (no database change)"
            yield MigrationStep(description, Safety.SAFE, breaking=True)
