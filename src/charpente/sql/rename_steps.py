"""`renamed_from` in a plan: one in-place rename instead of a dropped column and a new one.

`migrate apply` renames the column in one statement (its values are kept); processes of the
old design then fail on the old name at once. With no downtime, `charpente migrate start`
and `complete` take the expand/contract path instead (sql/renames.py).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic.operations import ops

from charpente.design.model import Design
from charpente.sql.migration_steps import Facts, MigrationStep, Safety

__all__ = ["with_renames"]


def with_renames(
    facts: Facts, previous: Design | None, steps: Sequence[MigrationStep]
) -> list[MigrationStep]:
    """Each `add column new` + `drop column old` pair of a `renamed_from`, as one rename."""
    result = list(steps)
    if previous is None:
        return result
    for resource in facts.design.resources.values():
        before = previous.resources.get(resource.name)
        if before is None:
            result = _table_renamed(result, resource.renamed_from, resource.name)
            continue
        for field in resource.fields:
            old = field.renamed_from
            if old is None or before.field(old) is None:
                continue
            result = _renamed(facts, result, resource.name, old, field.name)
    return result


def _renamed(
    facts: Facts, steps: list[MigrationStep], table: str, old: str, new: str
) -> list[MigrationStep]:
    added = next((s for s in steps if _adds(s, table, new)), None)
    dropped = next((s for s in steps if _drops(s, table, old)), None)
    if added is None or dropped is None:
        return steps
    assert isinstance(added.operation, ops.AddColumnOp)
    column = facts.metadata.tables[table].c[new]
    stored = _stored_column(facts.conn, table, old)
    if (
        stored is None
        or not _same_type(facts.conn, stored["type"], column.type)
        or bool(stored["nullable"]) != bool(column.nullable)
    ):
        return steps  # another type or nullability: `charpente migrate start` (with casts)
    q = facts.conn.dialect.identifier_preparer.quote
    # Both dialects rename in place (SQLite since 3.25): no table rebuild, indexes follow.
    operation = ops.ExecuteSQLOp(f"ALTER TABLE {q(table)} RENAME COLUMN {q(old)} TO {q(new)}")
    lock = None
    if facts.conn.dialect.name == "postgresql" and facts.has_rows(table):
        lock = (
            f"processes of the old design fail on {table}.{old} from this moment; with no "
            "downtime: `charpente migrate start`, then `charpente migrate complete`"
        )
    rename = MigrationStep(
        f"rename column {table}.{old} to {table}.{new} (its values are kept)",
        Safety.SAFE,
        breaking=True,
        operation=operation,
        lock=lock,
    )
    out = []
    for step in steps:
        if step is dropped or _about(step, table, (old, new)):
            continue
        out.append(rename if step is added else step)
    return out


def _table_renamed(steps: list[MigrationStep], old: str | None, new: str) -> list[MigrationStep]:
    """A renamed resource is not dropped: renaming tables is not supported yet."""
    blocker = (
        f"`{new}` says it is renamed from `{old}`, and renaming a table is not supported yet: "
        f"remove `renamed_from` to drop `{old}` and create `{new}`, or keep the name `{old}`"
    )
    return [
        dataclasses.replace(step, blocker=blocker)
        if isinstance(step.operation, ops.DropTableOp) and step.operation.table_name == old
        else step
        for step in steps
    ]


def _adds(step: MigrationStep, table: str, column: str) -> bool:
    op = step.operation
    return isinstance(op, ops.AddColumnOp) and op.table_name == table and op.column.name == column


def _drops(step: MigrationStep, table: str, column: str) -> bool:
    op = step.operation
    return isinstance(op, ops.DropColumnOp) and op.table_name == table and op.column_name == column


def _about(step: MigrationStep, table: str, columns: tuple[str, ...]) -> bool:
    """A design-only step about either name (the rename step says it all)."""
    return step.operation is None and any(
        step.description.startswith(f"{table}.{c}:") for c in columns
    )


def _stored_column(conn: sa.Connection, table: str, name: str) -> dict[str, Any] | None:
    for column in sa.inspect(conn).get_columns(table):
        if column["name"] == name:
            return dict(column)
    return None


def _same_type(conn: sa.Connection, stored: Any, wanted: Any) -> bool:
    def sql(type_: Any) -> str:
        compiled = sa.types.to_instance(type_).compile(dialect=conn.dialect)
        return str(compiled).split(" COLLATE ")[0].lower()

    return sql(stored) == sql(wanted)
