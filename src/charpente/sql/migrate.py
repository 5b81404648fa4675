"""Migrations: the steps from the live database to the design's tables, classified and run.

Alembic compares and runs the operations; this module classifies them, refuses unsafe ones,
keeps the history table, and never touches a table charpente did not create.
"""

from __future__ import annotations

import datetime
import json
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractAsyncContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from alembic.autogenerate import produce_migrations
from alembic.migration import MigrationContext
from alembic.operations import Operations, ops
from sqlalchemy.ext.asyncio import AsyncEngine

from charpente.design.diff import design_from_json, design_to_json, diff_designs
from charpente.design.model import Design
from charpente.errors import MigrationError
from charpente.sql.engine import SQLITE_BEGIN, is_sqlite, writer_lock
from charpente.sql.expansion import (
    bound_lock_waits,
    invalid_indexes,
    online_steps,
    precheck_deferred,
    retrying_lock_waits,
    run_deferred,
)
from charpente.sql.migration_steps import (
    Facts,
    MigrationPlan,
    MigrationStep,
    Safety,
    classify_operation,
    design_only_steps,
    flatten,
    with_breaking,
)
from charpente.sql.rename_steps import with_renames
from charpente.sql.rollout import active_expansion, may_apply, serves_side_by_side
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
_LOCK_CLASS = 0x63686172  # "char": with the schema's hash, one lock per schema (PostgreSQL)
_LOCK_POLL_SECONDS = 0.2  # how often a migration waiting for another one tries again


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
    def transaction() -> MigrationPlan:
        with _foreign_keys_deferred(conn), conn.begin():
            _begin_sqlite_transaction(conn)
            bound_lock_waits(conn)  # PostgreSQL: a lock writers would queue behind, 500 ms at most
            _lock_migrations(conn)
            refuse_during_expansion(conn, design)
            plan = _plan(conn, design)
            _refuse(plan, allow_destructive=allow_destructive, only_safe=only_safe)
            _run_steps(conn, plan.steps)
            precheck_deferred(conn, plan.steps)
            _check_foreign_keys(conn)
            if plan.steps or not plan.is_recorded:
                _record(conn, plan)
        return plan

    with _session_lock(conn):
        plan = retrying_lock_waits(conn, transaction)
        run_deferred(conn, plan.steps)  # PostgreSQL's zero-downtime forms, after the commit
    return plan


def _lock_key() -> tuple[Any, Any]:
    """Migrations of one schema take turns; those of other schemas (other apps, tests running
    in parallel on one database) do not wait for them."""
    return sa.literal(_LOCK_CLASS, sa.Integer()), sa.func.hashtext(sa.func.current_schema())


@contextmanager
def _session_lock(conn: sa.Connection) -> Iterator[None]:
    """On PostgreSQL, hold the migration lock past the commit, while deferred steps run.

    A process waiting its turn polls with short statements instead of blocking in one: a
    CREATE INDEX CONCURRENTLY of the process holding the lock waits for every snapshot
    older than its own, and a blocked pg_advisory_lock would hold one (a deadlock). The
    pause between tries is taken in the server (pg_sleep), never on the event loop.
    """
    if conn.dialect.name != "postgresql":
        yield
        return
    while not conn.execute(sa.select(sa.func.pg_try_advisory_lock(*_lock_key()))).scalar_one():
        conn.commit()
        conn.execute(sa.select(sa.func.pg_sleep(_LOCK_POLL_SECONDS)))  # not on the event loop
        conn.commit()
    conn.commit()
    try:
        yield
    finally:
        conn.rollback()
        conn.execute(sa.select(sa.func.pg_advisory_unlock(*_lock_key())))
        conn.commit()


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
        if (
            step.operation is None
            or step.after
            or (batches is not None and index in batches.skipped)
        ):
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
        conn.execute(sa.select(sa.func.pg_advisory_xact_lock(*_lock_key())))


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


def refuse_during_expansion(conn: sa.Connection, design: Design) -> None:
    """While `migrate start` … `complete` is under way, only its own designs are applied."""
    under_way = active_expansion(conn)
    snapshot = design_to_json(design)
    if under_way is not None and not may_apply(under_way, snapshot):
        raise MigrationError(
            "a zero-downtime migration is under way (`charpente migrate start`): finish it with "
            "`charpente migrate complete` and its design before applying another one"
        )


def _plan(conn: sa.Connection, design: Design) -> MigrationPlan:
    under_way = active_expansion(conn)
    if under_way is not None and serves_side_by_side(under_way, design_to_json(design)):
        # Both designs run side by side until `migrate complete`: nothing to do for either.
        return MigrationPlan((), design_to_json(design), is_recorded=True)
    previous, recorded = _latest_snapshot(conn)
    metadata = build_metadata(design)
    _history_table(metadata)
    known = set(previous.resources) if previous is not None else set()
    invalid = invalid_indexes(conn)
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
    facts = Facts(conn, design, metadata, operations)
    dropped = {op.table_name for op in operations if isinstance(op, ops.DropTableOp)}
    steps = [
        classify_operation(facts, op, table)
        for op, table in flatten(operations)
        if table not in dropped  # a dropped table's indexes go with it
    ]
    steps = [with_breaking(s, changes) for s in steps]
    steps.extend(design_only_steps(changes, steps))
    steps = with_renames(facts, previous, steps)
    steps = online_steps(facts, steps, invalid)
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
