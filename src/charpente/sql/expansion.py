"""Zero-downtime forms of migration steps on PostgreSQL.

A plain `CREATE INDEX`, `ADD FOREIGN KEY` or `SET NOT NULL` on a table with rows holds a
lock that makes writers wait while every row is read. Where a safer form is mechanical, the
step runs that form after the migration's transaction commits:

- an index (or a unique constraint) is built `CONCURRENTLY`, an INVALID leftover of an
  interrupted build being dropped first;
- a foreign key is added `NOT VALID`, then validated (which lets writes go on);
- `SET NOT NULL` goes through a `CHECK (… IS NOT NULL) NOT VALID`, validated, so that the
  final `SET NOT NULL` does not read the table.

Steps with no mechanical form (a type change, a rewrite) are marked with their lock and the
expand/contract path to take instead. SQLite keeps its one-transaction migrations.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

import sqlalchemy as sa
from alembic.operations import ops

from charpente.errors import MigrationError
from charpente.sql.migration_steps import (
    Deferred,
    Facts,
    MigrationStep,
    Safety,
    classify_operation,
)

__all__ = [
    "LOCK_TIMEOUT_MS",
    "bound_lock_waits",
    "invalid_indexes",
    "is_lock_timeout",
    "online_steps",
    "precheck_deferred",
    "retrying_lock_waits",
    "run_deferred",
    "run_statements",
    "sleep",
]

LOCK_TIMEOUT_MS = 500  # the longest a statement of ours may make writers wait on a lock
RETRIES = 40  # attempts at a statement that timed out on its lock
_BACKOFF_S = (0.2, 0.4, 0.8, 1.0)  # gaps in which queued writers go through

_INVALID_INDEXES = sa.text(
    "SELECT i.relname FROM pg_index x "
    "JOIN pg_class i ON i.oid = x.indexrelid "
    "JOIN pg_namespace n ON n.oid = i.relnamespace "
    "WHERE NOT x.indisvalid AND n.nspname = current_schema()"
)
_UNVALIDATED = sa.text(
    "SELECT t.relname, c.conname FROM pg_constraint c "
    "JOIN pg_class t ON t.oid = c.conrelid "
    "JOIN pg_namespace n ON n.oid = t.relnamespace "
    "WHERE NOT c.convalidated AND c.contype = 'f' AND n.nspname = current_schema() "
    "ORDER BY t.relname, c.conname"
)


def invalid_indexes(conn: sa.Connection) -> frozenset[str]:
    """Indexes of the current schema left INVALID (an interrupted `CREATE INDEX CONCURRENTLY`)."""
    if conn.dialect.name != "postgresql":
        return frozenset()
    return frozenset(conn.execute(_INVALID_INDEXES).scalars())


def online_steps(
    facts: Facts, steps: Sequence[MigrationStep], invalid: frozenset[str]
) -> list[MigrationStep]:
    """The plan's steps, in their zero-downtime form where a table with rows would be locked."""
    if facts.conn.dialect.name != "postgresql":
        return list(steps)
    q = facts.conn.dialect.identifier_preparer.quote
    steps = _rebuilt_leftovers(facts, steps, invalid)
    result = [_online(facts, step, invalid, q) for step in steps]
    tables = set(facts.metadata.tables)
    for table, name in facts.conn.execute(_UNVALIDATED).all():
        if table in tables:
            result.append(
                MigrationStep(
                    f"validate foreign key {name} on {table} (left unvalidated by an "
                    "interrupted migration)",
                    Safety.SAFE,
                    after=(Deferred(f"ALTER TABLE {q(table)} VALIDATE CONSTRAINT {q(name)}"),),
                    lock="validated while writes go on",
                )
            )
    return result


def _rebuilt_leftovers(
    facts: Facts, steps: Sequence[MigrationStep], invalid: frozenset[str]
) -> list[MigrationStep]:
    """An INVALID index of the design is built again (dropped first, not as a step of its own)."""
    if not invalid:
        return list(steps)
    kept = [
        s
        for s in steps
        if not (isinstance(s.operation, ops.DropIndexOp) and s.operation.index_name in invalid)
    ]
    created = {_created_name(s.operation) for s in kept}
    for table in facts.metadata.tables.values():
        for index in sorted(table.indexes, key=lambda i: str(i.name)):
            if index.name in invalid and index.name not in created:
                kept.append(classify_operation(facts, ops.CreateIndexOp.from_index(index), None))
        for constraint in table.constraints:
            if (
                isinstance(constraint, sa.UniqueConstraint)
                and constraint.name in invalid
                and constraint.name not in created
            ):
                op = ops.CreateUniqueConstraintOp.from_constraint(constraint)
                kept.append(classify_operation(facts, op, None))
    return kept


def _created_name(op: ops.MigrateOperation | None) -> str | None:
    if isinstance(op, ops.CreateIndexOp):
        return str(op.index_name)
    if isinstance(op, ops.CreateUniqueConstraintOp):
        return str(op.constraint_name)
    return None


def _online(facts: Facts, step: MigrationStep, invalid: frozenset[str], q: Any) -> MigrationStep:
    op = step.operation
    table = _table_of(op)
    if table is None or not facts.has_rows(table):
        return step
    if isinstance(op, ops.CreateIndexOp):
        return _concurrent_index(facts, step, op, invalid, q)
    if isinstance(op, ops.CreateUniqueConstraintOp):
        return _concurrent_unique(step, op, invalid, q)
    if isinstance(op, ops.CreateForeignKeyOp):
        return _foreign_key_not_valid(facts, step, op, q)
    if isinstance(op, ops.AlterColumnOp):
        return _altered_column(step, op, q)
    if isinstance(op, ops.AddColumnOp) and not op.column.nullable and step.blocker is not None:
        lock = (
            "cannot be added to a table with rows; expand/contract: add it optional, fill it, "
            "then make it required (the NOT NULL is then set without a long lock)"
        )
        return dataclasses.replace(step, lock=lock)
    return step


def _table_of(op: ops.MigrateOperation | None) -> str | None:
    if isinstance(op, ops.CreateForeignKeyOp):
        return str(op.source_table)
    if isinstance(
        op,
        ops.CreateIndexOp | ops.CreateUniqueConstraintOp | ops.AlterColumnOp | ops.AddColumnOp,
    ):
        return str(op.table_name)
    return None


def _leftover(name: str, invalid: frozenset[str]) -> str:
    return (
        " (an INVALID index left by an interrupted build is dropped first)"
        if name in invalid
        else ""
    )


def _concurrent_index(
    facts: Facts, step: MigrationStep, op: ops.CreateIndexOp, invalid: frozenset[str], q: Any
) -> MigrationStep:
    index = op.to_index()
    index.dialect_options["postgresql"]["concurrently"] = True
    create = str(sa.schema.CreateIndex(index).compile(dialect=facts.conn.dialect))
    name = str(op.index_name)
    drop = f"DROP INDEX CONCURRENTLY IF EXISTS {q(name)}"
    lock = (
        f"CREATE INDEX would block writes to {op.table_name} while it reads every row; "
        f"built CONCURRENTLY after the commit{_leftover(name, invalid)}"
    )
    return dataclasses.replace(
        step, lock=lock, after=(Deferred(drop), Deferred(create, cleanup=drop))
    )


def _concurrent_unique(
    step: MigrationStep, op: ops.CreateUniqueConstraintOp, invalid: frozenset[str], q: Any
) -> MigrationStep:
    table, name = str(op.table_name), str(op.constraint_name)
    columns = ", ".join(q(c) for c in op.columns)
    drop = f"DROP INDEX CONCURRENTLY IF EXISTS {q(name)}"
    create = f"CREATE UNIQUE INDEX CONCURRENTLY {q(name)} ON {q(table)} ({columns})"
    attach = f"ALTER TABLE {q(table)} ADD CONSTRAINT {q(name)} UNIQUE USING INDEX {q(name)}"
    lock = (
        f"a unique constraint built in place blocks writes to {table} while it reads every "
        f"row; its index is built CONCURRENTLY after the commit, then attached"
        f"{_leftover(name, invalid)}"
    )
    after = (Deferred(drop), Deferred(create, cleanup=drop), Deferred(attach, exclusive=True))
    return dataclasses.replace(step, lock=lock, after=after)


def _foreign_key_not_valid(
    facts: Facts, step: MigrationStep, op: ops.CreateForeignKeyOp, q: Any
) -> MigrationStep:
    fk = op.to_constraint()
    add = str(sa.schema.AddConstraint(fk).compile(dialect=facts.conn.dialect)) + " NOT VALID"
    table, name = str(op.source_table), str(op.constraint_name)
    lock = (
        f"checking every row of {table} would hold a lock that blocks writes; added NOT VALID, "
        "then validated while writes go on"
    )
    after = (
        Deferred(f"ALTER TABLE {q(table)} DROP CONSTRAINT IF EXISTS {q(name)}", exclusive=True),
        Deferred(add, exclusive=True),
        Deferred(f"ALTER TABLE {q(table)} VALIDATE CONSTRAINT {q(name)}"),
    )
    return dataclasses.replace(step, lock=lock, after=after)


def _altered_column(step: MigrationStep, op: ops.AlterColumnOp, q: Any) -> MigrationStep:
    table, column = str(op.table_name), str(op.column_name)
    if op.modify_type is not None:
        lock = (
            f"rewrites {table} under an exclusive lock (reads and writes wait); "
            "expand/contract: a new field of the new type with `renamed_from`, "
            "`charpente migrate start`, then `charpente migrate complete`"
        )
        return dataclasses.replace(step, lock=lock)
    others = (op.modify_server_default, op.modify_comment)
    if (
        op.modify_nullable is not False
        or op.modify_name is not None
        or any(o is not False for o in others)
    ):
        return step  # another change in the same statement: kept as it is, in the transaction
    check = not_null_check_name(table, column)
    t = q(table)
    lock = (
        f"SET NOT NULL reads every row of {table} under an exclusive lock; runs as "
        "CHECK (… IS NOT NULL) NOT VALID, VALIDATE, then SET NOT NULL after the commit"
    )
    after = (
        Deferred(f"ALTER TABLE {t} DROP CONSTRAINT IF EXISTS {q(check)}", exclusive=True),
        Deferred(
            f"ALTER TABLE {t} ADD CONSTRAINT {q(check)} CHECK ({q(column)} IS NOT NULL) NOT VALID",
            exclusive=True,
        ),
        Deferred(f"ALTER TABLE {t} VALIDATE CONSTRAINT {q(check)}"),
        Deferred(f"ALTER TABLE {t} ALTER COLUMN {q(column)} SET NOT NULL", exclusive=True),
        Deferred(f"ALTER TABLE {t} DROP CONSTRAINT {q(check)}", exclusive=True),
    )
    return dataclasses.replace(step, lock=lock, after=after)


def not_null_check_name(table: str, column: str) -> str:
    """The temporary CHECK that lets SET NOT NULL skip reading the table."""
    name = f"ck_{table}_{column}_not_null"
    if len(name) <= 63:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:8]
    return f"{name[:54]}_{digest}"


# --- checks before the commit -------------------------------------------------------------


def precheck_deferred(conn: sa.Connection, steps: Sequence[MigrationStep]) -> None:
    """Fail before the commit when existing rows would make a deferred step fail after it."""
    for step in steps:
        if not step.after:
            continue
        op = step.operation
        if isinstance(op, ops.CreateUniqueConstraintOp) or (
            isinstance(op, ops.CreateIndexOp) and op.unique
        ):
            columns = (
                list(op.columns)
                if isinstance(op, ops.CreateUniqueConstraintOp)
                else [str(getattr(c, "name", c)) for c in op.columns]
            )
            _no_duplicates(conn, step, str(op.table_name), columns)
        elif isinstance(op, ops.CreateForeignKeyOp):
            _no_orphans(conn, step, op)


def _no_duplicates(
    conn: sa.Connection, step: MigrationStep, table: str, columns: list[str]
) -> None:
    t = sa.table(table, *(sa.column(c) for c in columns))
    cols = [t.c[c] for c in columns]
    query = (
        sa.select(sa.func.count())
        .select_from(t)
        .where(*(c.is_not(None) for c in cols))
        .group_by(*cols)
        .having(sa.func.count() > 1)
        .limit(1)
    )
    twins = conn.execute(query).scalar_one_or_none()
    if twins:
        raise MigrationError(
            f"{step.description} failed: {twins} rows share the same value; fix them first"
        )


def _no_orphans(conn: sa.Connection, step: MigrationStep, op: ops.CreateForeignKeyOp) -> None:
    local, remote = list(op.local_cols), list(op.remote_cols)
    source = sa.table(str(op.source_table), *(sa.column(c) for c in local)).alias("s")
    target = sa.table(str(op.referent_table), *(sa.column(c) for c in remote)).alias("r")
    join = sa.and_(*(source.c[a] == target.c[b] for a, b in zip(local, remote, strict=True)))
    query = (
        sa.select(sa.literal(1))
        .select_from(source.outerjoin(target, join))
        .where(*(source.c[c].is_not(None) for c in local), target.c[remote[0]].is_(None))
        .limit(1)
    )
    if conn.execute(query).first() is not None:
        raise MigrationError(
            f"{step.description} failed: some rows refer to records that do not exist"
        )


# --- after the commit ---------------------------------------------------------------------


def run_deferred(conn: sa.Connection, steps: Iterable[MigrationStep]) -> None:
    """Run the steps' deferred statements in autocommit, each lock wait bounded and retried."""
    for step in steps:
        if step.after:
            run_statements(conn, step.description, step.after)


def run_statements(conn: sa.Connection, what: str, statements: Sequence[Deferred]) -> None:
    """Each statement in autocommit (CONCURRENTLY needs it), its lock waits bounded, retried."""
    if not statements:
        return
    default = conn.default_isolation_level
    conn.commit()
    conn.execution_options(isolation_level="AUTOCOMMIT")
    try:
        for deferred in statements:
            _run_one(conn, what, deferred)
    finally:
        conn.exec_driver_sql("RESET lock_timeout")
        conn.commit()
        conn.execution_options(isolation_level=default)


def _run_one(conn: sa.Connection, what: str, deferred: Deferred) -> None:
    timeout = f"{LOCK_TIMEOUT_MS}ms" if deferred.exclusive else "0"
    for attempt in range(RETRIES):
        conn.exec_driver_sql(f"SET lock_timeout = '{timeout}'")
        try:
            conn.exec_driver_sql(deferred.sql)
            return
        except sa.exc.DBAPIError as exc:
            if not is_lock_timeout(exc) or attempt == RETRIES - 1:
                raise MigrationError(
                    f"{what} failed after the commit: {exc.orig}; "
                    "the steps before it are applied, `charpente migrate plan` shows the rest"
                ) from exc
            if deferred.cleanup is not None:
                conn.exec_driver_sql(deferred.cleanup)
            pause(conn, attempt)


def bound_lock_waits(conn: sa.Connection) -> None:
    """In the current PostgreSQL transaction, wait at most LOCK_TIMEOUT_MS for a lock."""
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT_MS}ms'")


T = TypeVar("T")


def retrying_lock_waits(conn: sa.Connection, transaction: Callable[[], T]) -> T:
    """Run `transaction` (which begins and commits), again after a pause when a lock wait
    timed out: the writers queued behind our lock request go through in between."""
    for attempt in range(RETRIES):
        try:
            return transaction()
        except (sa.exc.DBAPIError, MigrationError) as exc:
            if attempt == RETRIES - 1 or not is_lock_timeout(exc):
                raise
        pause(conn, attempt)
    raise AssertionError("unreachable")  # the last attempt returns or raises


def pause(conn: sa.Connection, attempt: int) -> None:
    """The pause before a retry (longer each time)."""
    sleep(conn, _BACKOFF_S[min(attempt, len(_BACKOFF_S) - 1)])


def sleep(conn: sa.Connection, seconds: float) -> None:
    """Wait in the server: this code runs on the event loop (through run_sync), never block it."""
    conn.execute(sa.select(sa.func.pg_sleep(seconds)))
    conn.commit()


def is_lock_timeout(exc: BaseException | None) -> bool:
    """Whether `exc` (or what caused it) is PostgreSQL's lock_timeout (SQLSTATE 55P03)."""
    seen = 0
    while exc is not None and seen < 8:
        orig = exc.orig if isinstance(exc, sa.exc.DBAPIError) else exc
        if getattr(orig, "sqlstate", None) == "55P03" or "lock timeout" in str(orig):
            return True
        exc, seen = exc.__cause__, seen + 1
    return False
