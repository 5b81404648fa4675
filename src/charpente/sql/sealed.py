"""Encrypted columns at rest: re-sealing stored values under the active key, and what
turning `encrypted` on or off means for a column that already holds values.

Re-sealing walks each table by id in batches, one transaction per batch, and replaces a
value only if it is still the one read (a concurrent write wins: it used the active key).
Turning `encrypted` on or off is a migration step of its own (the column's SQL type does
not change): safe while the column holds no value, refused while it does, because stored
values are never encrypted or decrypted in place.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from charpente.design.diff import design_from_json
from charpente.design.model import Design, Field, Resource
from charpente.errors import MigrationError
from charpente.runtime.encryption import FieldCipher, encrypted_fields
from charpente.runtime.secrets import SealError
from charpente.sql.database import SqlDatabase
from charpente.sql.executor import Executor
from charpente.sql.migrate import HISTORY_TABLE, MigrationPlan, MigrationStep, Safety

__all__ = [
    "DEFAULT_BATCH",
    "Resealed",
    "encryption_steps",
    "refuse_encryption_steps",
    "reseal_values",
    "with_encryption_steps",
]

DEFAULT_BATCH = 500
MAX_BATCH = 10_000

Progress = Callable[[str, int], None]
"""Told a resource's name and how many of its values a batch re-sealed."""


@dataclass(frozen=True, slots=True)
class Resealed:
    """What a re-seal did: values read, and values sealed again under the active key."""

    checked: int = 0
    resealed: int = 0

    def __add__(self, other: Resealed) -> Resealed:
        return Resealed(self.checked + other.checked, self.resealed + other.resealed)


# --- re-sealing --------------------------------------------------------------------------


async def reseal_values(
    database: SqlDatabase,
    design: Design,
    cipher: FieldCipher,
    *,
    batch: int = DEFAULT_BATCH,
    progress: Progress | None = None,
) -> Resealed:
    """Seal every encrypted value stored under an older key again under the active one.

    Raises SealError (naming the field and the record) when a stored value does not open.
    """
    if not 1 <= batch <= MAX_BATCH:
        raise ValueError(f"the batch size must be between 1 and {MAX_BATCH}")
    total = Resealed()
    for name, fields in encrypted_fields(design).items():
        table = database.metadata_tables[name]
        total += await _reseal_table(database, _Walk(table, fields, cipher, batch), progress)
    return total


@dataclass(frozen=True)
class _Walk:
    """One table's encrypted columns, walked by id."""

    table: sa.Table
    fields: tuple[Field, ...]
    cipher: FieldCipher
    batch: int

    def page(self, after: str | None) -> sa.Select[Any]:
        columns = [self.table.c.id, *(self.table.c[f.name] for f in self.fields)]
        query = sa.select(*columns).order_by(self.table.c.id).limit(self.batch)
        return query if after is None else query.where(self.table.c.id > after)

    def replace(self, field: Field) -> sa.Update:
        """`field` := the new value, where the row still holds the old one."""
        column = self.table.c[field.name]
        return (
            sa.update(self.table)
            .where(self.table.c.id == sa.bindparam("_id"), column == sa.bindparam("_old"))
            .values({field.name: sa.bindparam("_new")})
        )


async def _reseal_table(database: SqlDatabase, walk: _Walk, progress: Progress | None) -> Resealed:
    statements = {f.name: walk.replace(f) for f in walk.fields}
    done, after = Resealed(), None
    while True:
        async with database.reader() as ex:
            rows = await ex.rows(walk.page(after))
        if not rows:
            return done
        changes = list(_stale_values(walk, rows))
        async with database.writer() as ex:
            await _write(ex, statements, changes)
        checked = sum(1 for row in rows for f in walk.fields if row[f.name] is not None)
        done += Resealed(checked, len(changes))
        if progress is not None:
            progress(walk.table.name, len(changes))
        after = str(rows[-1]["id"])


def _stale_values(walk: _Walk, rows: list[dict[str, Any]]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(field, parameters) for each value sealed under an older key, sealed anew."""
    resource = walk.table.name
    for row in rows:
        for field in walk.fields:
            token = row[field.name]
            try:
                if token is None or not walk.cipher.is_stale(token):
                    continue
                text = walk.cipher.open(resource, field.name, token)
            except SealError as error:  # say where, never what
                raise SealError(f"{resource}.{field.name} of {row['id']}: {error}") from None
            fresh = walk.cipher.seal(resource, field.name, text)
            yield field.name, {"_id": row["id"], "_old": token, "_new": fresh}


async def _write(
    ex: Executor, statements: dict[str, sa.Update], changes: list[tuple[str, dict[str, Any]]]
) -> None:
    for name, params in changes:
        await ex.run(statements[name], params)


# --- migrations --------------------------------------------------------------------------


async def encryption_steps(engine: AsyncEngine, design: Design) -> list[MigrationStep]:
    """The steps for fields whose `encrypted` changed since the last applied design."""
    async with engine.connect() as conn:
        return await conn.run_sync(_steps, design)


async def with_encryption_steps(
    engine: AsyncEngine, design: Design, plan: MigrationPlan
) -> MigrationPlan:
    """`plan` followed by the encryption steps of `design`."""
    steps = await encryption_steps(engine, design)
    return dataclasses.replace(plan, steps=(*plan.steps, *steps)) if steps else plan


def refuse_encryption_steps(steps: list[MigrationStep], *, only_safe: bool = False) -> None:
    """Raise MigrationError for a step that cannot run (or is not safe, with `only_safe`)."""
    for step in steps:
        if step.blocker is not None:
            raise MigrationError(f"cannot {step.description}: {step.blocker}")
        if only_safe and step.safety is not Safety.SAFE:
            raise MigrationError(f"{step.description} is not safe to run automatically")


def _steps(conn: sa.Connection, design: Design) -> list[MigrationStep]:
    previous = _latest_design(conn)
    if previous is None:
        return []
    steps = []
    for name, resource in design.resources.items():
        before = previous.resource(name)
        if before is None:
            continue
        for field in _toggled(before, resource):
            steps.append(_step(name, field, _stored_values(conn, name, field.name)))
    return steps


def _toggled(before: Resource, after: Resource) -> Iterator[Field]:
    for field in after.fields:
        old = before.field(field.name)
        if old is not None and old.encrypted != field.encrypted:
            yield field


def _step(resource: str, field: Field, stored: int) -> MigrationStep:
    where = f"{resource}.{field.name}"
    verb = "encrypt" if field.encrypted else "stop encrypting"
    if not stored:
        return MigrationStep(f"{verb} {where} (it holds no value yet)", Safety.SAFE)
    description = f"{verb} {where} ({stored} stored values)"
    if field.encrypted:
        blocker = (
            "stored values are not encrypted in place: add a new encrypted field, "
            "copy the values into it, then remove this one"
        )
    else:
        blocker = (
            "its values are stored sealed: add a field without `encrypted`, "
            "copy the values into it, then remove this one"
        )
    return MigrationStep(description, Safety.BACKFILL, blocker=blocker)


def _latest_design(conn: sa.Connection) -> Design | None:
    if not sa.inspect(conn).has_table(HISTORY_TABLE):
        return None
    history = sa.table(HISTORY_TABLE, sa.column("id"), sa.column("design"))
    query = sa.select(history.c.design).order_by(history.c.id.desc()).limit(1)
    text = conn.execute(query).scalar_one_or_none()
    try:
        return None if text is None else design_from_json(text)
    except (ValueError, KeyError, TypeError):
        return None  # the migration planner reports an unreadable history


def _stored_values(conn: sa.Connection, table: str, column: str) -> int:
    t = sa.table(table, sa.column(column))
    query = sa.select(sa.func.count()).select_from(t).where(t.c[column].is_not(None))
    return int(conn.execute(query).scalar_one())
