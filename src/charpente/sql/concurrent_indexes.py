"""New indexes on PostgreSQL tables that already exist: built with CREATE INDEX CONCURRENTLY.

A plain CREATE INDEX blocks every write to its table until it is built — minutes on a
large table. CONCURRENTLY does not, but it cannot run inside a transaction, so such steps
run after the migration's transaction has committed, one at a time. A build that fails
leaves an INVALID index behind: it is dropped at once, and any INVALID index left by an
earlier failure under the same name is dropped before building again.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic.migration import MigrationContext
from alembic.operations import Operations, ops

from charpente.errors import MigrationError
from charpente.sql.migration_steps import MigrationStep

__all__ = ["build_concurrently", "concurrent_steps"]

_INVALID = sa.text(
    "SELECT c.relname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
    "WHERE NOT i.indisvalid AND c.relname = :name "
    "AND c.relnamespace = current_schema()::regnamespace"
)


def concurrent_steps(conn: sa.Connection, steps: Sequence[MigrationStep]) -> list[MigrationStep]:
    """The steps that create an index on a table existing before this migration (PostgreSQL)."""
    if conn.dialect.name != "postgresql":
        return []
    created = {s.operation.table_name for s in steps if isinstance(s.operation, ops.CreateTableOp)}
    return [
        s
        for s in steps
        if isinstance(s.operation, ops.CreateIndexOp) and s.operation.table_name not in created
    ]


def build_concurrently(conn: sa.Connection, steps: Sequence[MigrationStep]) -> None:
    """Build each index with CONCURRENTLY, outside any transaction. Raises MigrationError."""
    if not steps:
        return
    autocommit = conn.execution_options(isolation_level="AUTOCOMMIT")
    operations = Operations(MigrationContext.configure(autocommit))
    for step in steps:
        op = step.operation
        assert isinstance(op, ops.CreateIndexOp)  # chosen by concurrent_steps
        _drop_invalid(autocommit, op.index_name)
        try:
            operations.create_index(
                op.index_name,
                op.table_name,
                list(op.columns),
                unique=bool(op.unique),
                postgresql_concurrently=True,
                if_not_exists=True,
            )
        except sa.exc.DBAPIError as exc:
            _drop_invalid(autocommit, op.index_name)
            raise MigrationError(
                f"{step.description} failed: {exc.orig}; the steps before it are applied, "
                "run `charpente migrate apply` again once the cause is fixed"
            ) from exc


def _drop_invalid(conn: sa.Connection, name: str | None) -> None:
    if name is None:
        return
    for (found,) in conn.execute(_INVALID, {"name": name}):
        quoted = conn.dialect.identifier_preparer.quote(str(found))
        conn.exec_driver_sql(f"DROP INDEX CONCURRENTLY IF EXISTS {quoted}")
