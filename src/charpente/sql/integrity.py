"""Integrity errors from the database, as API errors naming the fields at fault.

PostgreSQL reports the constraint by name (names follow schema.NAMING); SQLite reports the
columns of a unique or not-null failure in its message, and nothing for a foreign key, so
the offending reference is found by looking it up in the same transaction.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from charpente.design.model import Design, Kind, OnDelete
from charpente.errors import ApiError, Conflict, FieldError, ValidationFailed
from charpente.sql.executor import Executor

__all__ = ["INTEGRITY_ERRORS", "IntegrityMap", "Violation", "classify"]

INTEGRITY_ERRORS = (sa.exc.IntegrityError,)
"""What a refused write raises, through SQLAlchemy or the PostgreSQL executor alike."""

_PG_CODES = {"23505": "unique", "23503": "foreign_key", "23502": "not_null"}
_SQLITE_CODES = {
    "SQLITE_CONSTRAINT_UNIQUE": "unique",
    "SQLITE_CONSTRAINT_PRIMARYKEY": "unique",
    "SQLITE_CONSTRAINT_FOREIGNKEY": "foreign_key",
    "SQLITE_CONSTRAINT_NOTNULL": "not_null",
}


@dataclass(frozen=True, slots=True)
class Violation:
    """What the database refused: `kind` is unique, foreign_key, not_null or other;
    `constraint` is PostgreSQL's constraint name, `columns` SQLite's column list."""

    kind: str
    constraint: str | None = None
    columns: tuple[str, ...] = ()


def classify(exc: Exception) -> Violation:
    """The violation behind an integrity error (one of INTEGRITY_ERRORS), without reading
    PostgreSQL's text."""
    orig: Any = getattr(exc, "orig", exc)
    sqlstate = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)
    if sqlstate is not None:
        # asyncpg's own error (the PostgreSQL executor), or SQLAlchemy's adaptation of it
        cause = orig if hasattr(orig, "constraint_name") else orig.__cause__
        return _postgres_violation(sqlstate, cause)
    kind = _SQLITE_CODES.get(getattr(orig, "sqlite_errorname", ""), "other")
    if str(orig).startswith("FOREIGN KEY constraint failed"):
        kind = "foreign_key"  # ON DELETE RESTRICT fails as SQLITE_CONSTRAINT_TRIGGER
    return Violation(kind, None, _sqlite_columns(str(orig)))


def _postgres_violation(sqlstate: str, cause: Any) -> Violation:
    """asyncpg's error (`cause`) names the constraint and, for NOT NULL, the column."""
    kind = _PG_CODES.get(sqlstate, "other")
    column = getattr(cause, "column_name", None)
    return Violation(kind, getattr(cause, "constraint_name", None), _maybe(column))


class IntegrityMap:
    """Turns violations on a design's tables into Conflict / ValidationFailed."""

    def __init__(self, design: Design, tables: Mapping[str, sa.Table], dialect: sa.Dialect):
        self._design = design
        self._tables = tables
        self._by_name: dict[str, tuple[str, tuple[str, ...]]] = {}
        preparer = dialect.identifier_preparer
        for table in tables.values():
            items: list[sa.Constraint | sa.Index] = [*table.constraints, *table.indexes]
            for item in items:
                if item.name is not None:
                    name = preparer.format_constraint(item)
                    self._by_name[str(name)] = (table.name, _column_names(item))

    async def write_error(
        self,
        conn: Executor,
        exc: Exception,
        resource: str,
        values: Mapping[str, object],
    ) -> Exception:
        """The error to raise for a refused insert or update of `resource`."""
        violation = classify(exc)
        if violation.kind == "unique":
            return unique_conflict(resource, self._columns(violation))
        if violation.kind == "foreign_key":
            return await self._missing_refs(conn, violation, resource, values)
        if violation.kind == "not_null":
            errors = [FieldError(f, "required", f"{f} is required") for f in violation.columns]
            return ValidationFailed(detail="a required field is missing", errors=errors)
        return exc

    async def delete_error(
        self, conn: Executor, exc: Exception, resource: str, id: str
    ) -> Exception:
        """The error to raise for a refused delete: a `restrict` reference still points here."""
        violation = classify(exc)
        if violation.kind != "foreign_key":
            return exc
        if violation.constraint is not None:
            referrer = self._by_name.get(violation.constraint, ("other", ()))[0]
        else:
            referrer = await self._referrer(conn, resource, id)
        return Conflict(detail=f"{referrer} records still refer to it")

    def _columns(self, violation: Violation) -> tuple[str, ...]:
        if violation.constraint is not None and violation.constraint in self._by_name:
            return self._by_name[violation.constraint][1]
        return violation.columns

    async def _missing_refs(
        self,
        conn: Executor,
        violation: Violation,
        resource: str,
        values: Mapping[str, object],
    ) -> ApiError:
        if violation.constraint is not None:  # PostgreSQL: the transaction is aborted
            fields = self._by_name.get(violation.constraint, ("", ()))[1]
        else:
            fields = tuple(await self._absent_targets(conn, resource, values))
        errors = [self._not_found(resource, f) for f in fields]
        return ValidationFailed(detail="a reference points at no record", errors=errors)

    async def _absent_targets(
        self, conn: Executor, resource: str, values: Mapping[str, object]
    ) -> list[str]:
        found = []
        for f in self._design.resources[resource].fields:
            value = values.get(f.name)
            if f.kind is not Kind.REF or f.ref is None or value is None:
                continue
            target = self._tables[f.ref]
            query = sa.select(target.c.id).where(target.c.id == value)
            if await conn.first(query) is None:
                found.append(f.name)
        return found

    async def _referrer(self, conn: Executor, resource: str, id: str) -> str:
        for referring, f in self._design.referencing(resource):
            if f.on_delete is not OnDelete.RESTRICT:
                continue
            table = self._tables[referring.name]
            query = sa.select(table.c.id).where(table.c[f.name] == id).limit(1)
            if await conn.first(query) is not None:
                return referring.name
        return "other"

    def _not_found(self, resource: str, field: str) -> FieldError:
        target = self._design.resources[resource].field(field)
        ref = target.ref if target is not None and target.ref else "record"
        return FieldError(field, "not_found", f"no {ref} with this id")


def unique_conflict(resource: str, fields: tuple[str, ...]) -> Conflict:
    """409 naming the field(s) whose value another record already has."""
    if len(fields) == 1:
        message = f"{fields[0]} is already taken"
    else:
        message = "this combination of {} is already taken".format(", ".join(fields))
    errors = [FieldError(f, "unique", message) for f in fields]
    return Conflict(
        detail=f"another {resource} record has the same {' and '.join(fields)}", errors=errors
    )


def _column_names(item: sa.Constraint | sa.Index) -> tuple[str, ...]:
    columns: Any = getattr(item, "columns", ())
    return tuple(str(c.name) for c in columns)


def _maybe(value: str | None) -> tuple[str, ...]:
    return () if value is None else (value,)


def _sqlite_columns(message: str) -> tuple[str, ...]:
    """`UNIQUE constraint failed: t.a, t.b` -> ("a", "b")."""
    _, sep, listed = message.partition("constraint failed: ")
    if not sep:
        return ()
    return tuple(part.strip().rpartition(".")[2] for part in listed.split(","))
