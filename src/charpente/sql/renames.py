"""`charpente migrate start` and `complete`: a rename (or a type change) with no downtime.

`start` (expand): for each field whose `renamed_from` names a column of the last applied
design, the new column is added next to the old one, a trigger keeps both in step whichever
one a process writes, and the existing rows are copied in batches (1,000 rows, each in its
own short transaction, resumable). Then processes of the old design and of the new one run
side by side, each reading what the other writes.

`complete` (contract): once no process of the old design is alive, the triggers and the old
columns are dropped and the new columns get their constraints (NOT NULL, default).
"""

from __future__ import annotations

import dataclasses
import datetime
import functools
import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from charpente.design.diff import design_from_json, design_to_json
from charpente.design.model import Design, Resource
from charpente.errors import MigrationError
from charpente.sql import migrate
from charpente.sql.expansion import bound_lock_waits, retrying_lock_waits, sleep
from charpente.sql.migration_steps import Safety
from charpente.sql.presence import (
    STALE_AFTER_S,
    design_version,
    ensure_processes_table,
    live_processes as count_live,
)
from charpente.sql.rollout import (
    BACKFILLED,
    COMPLETED,
    COMPLETING,
    STARTED,
    Expansion,
    active_expansion,
    expansions_table,
    save_expansion,
)
from charpente.sql.schema import build_metadata

__all__ = [
    "BATCH_ROWS",
    "Progress",
    "Rename",
    "complete_migration",
    "start_migration",
]

BATCH_ROWS = 1000
PACE_S = 0.25  # the longest rest between two batches

Progress = Callable[[str, int, int], None]  # (table.column, rows done, rows in all)


@dataclass(frozen=True)
class Rename:
    """One column that takes over from another (same values, maybe another type)."""

    table: str
    old: str
    new: str
    old_type: str  # SQL types, for the casts between the two
    new_type: str

    @property
    def key(self) -> str:
        return f"{self.table}.{self.new}"

    @property
    def function(self) -> str:
        return _name(f"charpente_sync_{self.table}_{self.new}")


@dataclass(frozen=True)
class Started:
    renames: tuple[Rename, ...]
    resumed: bool


async def start_migration(
    engine: AsyncEngine, design: Design, progress: Progress | None = None
) -> Started:
    """Expand: new columns, triggers both ways, backfill. Resumes one interrupted."""
    async with engine.connect() as conn:
        return await conn.run_sync(_start, design, progress)


async def complete_migration(
    engine: AsyncEngine, design: Design, *, stale_after_s: float = STALE_AFTER_S
) -> tuple[Rename, ...]:
    """Contract: refuse while a process of the old design is alive, then drop the old columns."""
    async with engine.connect() as conn:
        return await conn.run_sync(_complete, design, stale_after_s)


# --- start --------------------------------------------------------------------------------


def _start(conn: sa.Connection, design: Design, progress: Progress | None) -> Started:
    _postgres_only(conn)
    with migrate._session_lock(conn):
        expansion, resumed = _expansion_for(conn, design)
        renames = tuple(Rename(**r) for r in expansion.renames)
        if expansion.state == BACKFILLED:
            return Started(renames, resumed)  # done already: both designs may run
        expanded = design_from_json(expansion.expanded_design)
        migrate._apply(conn, expanded, False, False)  # the new columns (indexes CONCURRENTLY)
        for rename in renames:
            _install_trigger(conn, rename)
    # The backfill runs without the migration lock: a `serve --migrate` of the old design
    # starting meanwhile need not wait for it (copying twice gives the same values).
    for rename in renames:
        _backfill(conn, expansion, rename, progress)
    expansion.state = BACKFILLED
    save_expansion(conn, expansion)
    conn.commit()
    return Started(renames, resumed)


def _postgres_only(conn: sa.Connection) -> None:
    if conn.dialect.name != "postgresql":
        raise MigrationError(
            "zero-downtime migrations need PostgreSQL; on SQLite (one writer) run "
            "`charpente migrate apply`"
        )


def _expansion_for(conn: sa.Connection, design: Design) -> tuple[Expansion, bool]:
    _ensure_tables(conn)
    snapshot = design_to_json(design)
    under_way = active_expansion(conn)
    if under_way is not None:
        if under_way.new_design != snapshot:
            raise MigrationError(
                "another zero-downtime migration is under way, started with another design: "
                "finish it first (`charpente migrate complete` with that design)"
            )
        if under_way.state == COMPLETING:
            raise MigrationError(
                "`charpente migrate complete` was interrupted: run it again to finish"
            )
        return under_way, True
    previous, _ = migrate._latest_snapshot(conn)
    if previous is None:
        raise MigrationError("no design was applied yet: run `charpente migrate apply` first")
    renames = _renames(conn, previous, design)
    if not renames:
        raise MigrationError(
            "no field has a `renamed_from` naming a column of the last applied design: nothing "
            "to start (`charpente migrate apply` runs the other changes)"
        )
    expanded = _expanded(previous, design, renames)
    t = expansions_table(sa.MetaData())
    now = datetime.datetime.now(datetime.UTC)
    new_id = conn.execute(
        t.insert()
        .values(
            started_at=now,
            updated_at=now,
            state=STARTED,
            old_design=design_to_json(previous),
            new_design=snapshot,
            expanded_design=design_to_json(expanded),
            renames=json.dumps([dataclasses.asdict(r) for r in renames]),
            progress="{}",
        )
        .returning(t.c.id)
    ).scalar_one()
    conn.commit()
    expansion = Expansion(
        new_id,
        STARTED,
        design_to_json(previous),
        snapshot,
        design_to_json(expanded),
        [dataclasses.asdict(r) for r in renames],
        {},
    )
    return expansion, False


def _ensure_tables(conn: sa.Connection) -> None:
    table = expansions_table(sa.MetaData())
    conn.execute(sa.schema.CreateTable(table, if_not_exists=True))
    conn.commit()
    ensure_processes_table(conn)  # so that `serve` processes already register
    conn.commit()


def _renames(conn: sa.Connection, previous: Design, design: Design) -> list[Rename]:
    found = []
    metadata = build_metadata(design)
    old_metadata = build_metadata(previous)
    inspector = sa.inspect(conn)
    for resource in design.resources.values():
        before = previous.resources.get(resource.name)
        if resource.renamed_from is not None and before is None:
            raise MigrationError(
                f"renaming the resource `{resource.renamed_from}` to `{resource.name}` with no "
                "downtime is not supported: processes of the old design would lose the table"
            )
        if before is None:
            continue
        stored = {c["name"] for c in inspector.get_columns(resource.name)}
        for f in resource.fields:
            old = f.renamed_from
            if old is None or before.field(old) is None or before.field(f.name) is not None:
                continue  # not a rename from the last design (or completed already)
            if old not in stored or f.name in stored:
                continue
            found.append(
                Rename(
                    resource.name,
                    old,
                    f.name,
                    _sql_type(old_metadata.tables[resource.name].c[old], conn),
                    _sql_type(metadata.tables[resource.name].c[f.name], conn),
                )
            )
    return found


def _sql_type(column: sa.Column[Any], conn: sa.Connection) -> str:
    return str(column.type.compile(dialect=conn.dialect)).split(" COLLATE ")[0]


def _expanded(previous: Design, design: Design, renames: list[Rename]) -> Design:
    """The new design with each renamed resource keeping its old column next to the new one
    (the new one optional, no default: a NULL is how the trigger knows who wrote)."""
    resources = dict(design.resources)
    for table in sorted({r.table for r in renames}):
        resources[table] = _both_columns(
            previous.resources[table],
            design.resources[table],
            [r for r in renames if r.table == table],
        )
    return dataclasses.replace(design, resources=resources)


def _both_columns(before: Resource, after: Resource, renames: list[Rename]) -> Resource:
    olds = {r.old for r in renames}
    news = {r.new for r in renames}
    fields = [
        dataclasses.replace(f, required=False, default=None) if f.name in news else f
        for f in after.fields
    ]
    fields += [f for f in before.fields if f.name in olds]
    indexes = after.indexes + tuple(
        i
        for i in before.indexes
        if any(c.field in olds for c in i.columns) and i not in after.indexes
    )
    unique = after.unique + tuple(u for u in before.unique if set(u) & olds)
    return dataclasses.replace(after, fields=tuple(fields), indexes=indexes, unique=unique)


def _name(text: str) -> str:
    if len(text) <= 63:
        return text
    return f"{text[:54]}_{hashlib.sha256(text.encode()).hexdigest()[:8]}"


def _install_trigger(conn: sa.Connection, rename: Rename) -> None:
    q = conn.dialect.identifier_preparer.quote
    old, new, fn = q(rename.old), q(rename.new), q(rename.function)
    same = rename.old_type == rename.new_type
    to_new = f"NEW.{old}" if same else f"CAST(NEW.{old} AS {rename.new_type})"
    to_old = f"NEW.{new}" if same else f"CAST(NEW.{new} AS {rename.old_type})"
    # A process of the old design writes only the old column, one of the new design only the
    # new one: copy whichever was written into the other.
    body = (
        f"CREATE OR REPLACE FUNCTION {fn}() RETURNS trigger LANGUAGE plpgsql AS $charpente$\n"
        "BEGIN\n"
        "  IF TG_OP = 'INSERT' THEN\n"
        f"    IF NEW.{new} IS NULL THEN NEW.{new} := {to_new};\n"
        f"    ELSE NEW.{old} := {to_old}; END IF;\n"
        f"  ELSIF NEW.{old} IS DISTINCT FROM OLD.{old} THEN NEW.{new} := {to_new};\n"
        f"  ELSIF NEW.{new} IS DISTINCT FROM OLD.{new} AND NEW.{new} IS DISTINCT FROM {to_new}"
        f" THEN NEW.{old} := {to_old};\n"
        "  END IF;\n"
        "  RETURN NEW;\n"
        "END\n"
        "$charpente$"
    )
    table = q(rename.table)

    def install() -> None:
        with conn.begin():
            bound_lock_waits(conn)
            conn.exec_driver_sql(body)
            conn.exec_driver_sql(f"DROP TRIGGER IF EXISTS {fn} ON {table}")
            conn.exec_driver_sql(
                f"CREATE TRIGGER {fn} BEFORE INSERT OR UPDATE ON {table} "
                f"FOR EACH ROW EXECUTE FUNCTION {fn}()"
            )

    retrying_lock_waits(conn, install)


def _backfill(
    conn: sa.Connection, expansion: Expansion, rename: Rename, progress: Progress | None
) -> None:
    """Copy the old column into the new one, BATCH_ROWS rows a transaction, in id order;
    the last id done is saved with each batch, so a new `start` goes on from there."""
    table = build_metadata(design_from_json(expansion.expanded_design)).tables[rename.table]
    total = int(conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one())
    last = expansion.progress.get(rename.key)
    done = 0
    if last is not None:
        query = sa.select(sa.func.count()).select_from(table).where(table.c.id <= last)
        done = int(conn.execute(query).scalar_one())
    conn.commit()
    if progress is not None:
        progress(rename.key, done, total)
    while True:
        began = time.monotonic()
        high, count = retrying_lock_waits(
            conn, functools.partial(_copy_batch, conn, table, rename, expansion, last)
        )
        if high is None:
            return
        # As long a rest as the batch took (at most PACE_S): the writers get half the time.
        sleep(conn, min(time.monotonic() - began, PACE_S))
        last, done = high, done + count
        if progress is not None:
            progress(rename.key, min(done, total), max(total, done))


def _copy_batch(
    conn: sa.Connection, table: sa.Table, rename: Rename, expansion: Expansion, low: str | None
) -> tuple[str | None, int]:
    """One batch in its own transaction: the next BATCH_ROWS ids after `low`, copied."""
    new, old = table.c[rename.new], table.c[rename.old]
    source = old if rename.old_type == rename.new_type else sa.cast(old, new.type)
    with conn.begin():
        bound_lock_waits(conn)
        window = sa.select(table.c.id).order_by(table.c.id).limit(BATCH_ROWS)
        if low is not None:
            window = window.where(table.c.id > low)
        ids = conn.execute(window).scalars().all()  # (PostgreSQL has no max() of uuids)
        if not ids:
            return None, 0
        high, count = ids[-1], len(ids)
        copy = (
            table.update()
            .values({rename.new: source})
            .where(table.c.id <= high, new.is_distinct_from(source))
        )
        if low is not None:
            copy = copy.where(table.c.id > low)
        conn.execute(copy)
        expansion.progress[rename.key] = str(high)
        save_expansion(conn, expansion)
    return str(high), int(count)


# --- complete -----------------------------------------------------------------------------


def _complete(conn: sa.Connection, design: Design, stale_after_s: float) -> tuple[Rename, ...]:
    _postgres_only(conn)
    with migrate._session_lock(conn):
        under_way = active_expansion(conn)
        conn.commit()
        if under_way is None:
            raise MigrationError(
                "no zero-downtime migration is under way: nothing to complete "
                "(`charpente migrate start` begins one)"
            )
        if under_way.new_design != design_to_json(design):
            raise MigrationError(
                "the migration under way was started with another design: complete it with that "
                "design (the one `charpente migrate start` was given)"
            )
        if under_way.state == STARTED:
            raise MigrationError(
                "the backfill has not finished: run `charpente migrate start` again (it goes on "
                "where it stopped), then `charpente migrate complete`"
            )
        new_version = design_version(under_way.new_design)
        alive = count_live(conn, other_than=new_version, stale_after_s=stale_after_s)
        conn.commit()
        if alive:
            raise MigrationError(
                f"{alive} process{'es' if alive != 1 else ''} of the old design "
                f"{'are' if alive != 1 else 'is'} still running (seen in the last "
                f"{stale_after_s:g} s): deploy the new design everywhere, then run "
                "`charpente migrate complete` again"
            )
        renames = tuple(Rename(**r) for r in under_way.renames)
        under_way.state = COMPLETING
        save_expansion(conn, under_way)
        conn.commit()
        try:
            _refuse_other_losses(conn, design, renames)
        except MigrationError:
            under_way.state = BACKFILLED
            save_expansion(conn, under_way)
            conn.commit()
            raise
        for rename in renames:
            _drop_trigger(conn, rename)
        migrate._apply(conn, design, True, False)
        under_way.state = COMPLETED
        save_expansion(conn, under_way)
        conn.commit()
    return renames


def _refuse_other_losses(conn: sa.Connection, design: Design, renames: tuple[Rename, ...]) -> None:
    plan = migrate._plan(conn, design)
    conn.commit()
    allowed = {f"drop column {r.table}.{r.old} (its values are lost)" for r in renames}
    other = [
        s for s in plan.steps if s.safety is Safety.DESTRUCTIVE and s.description not in allowed
    ]
    if other:
        names = "; ".join(s.description for s in other)
        raise MigrationError(
            f"completing would also {names}: run `charpente migrate apply --allow-destructive` "
            "for those after this migration"
        )


def old_column_exists(conn: sa.Connection, rename: Rename) -> bool:
    columns = sa.inspect(conn).get_columns(rename.table)
    return any(c["name"] == rename.old for c in columns)


def _drop_trigger(conn: sa.Connection, rename: Rename) -> None:
    q = conn.dialect.identifier_preparer.quote
    fn = q(rename.function)

    table, old = q(rename.table), q(rename.old)

    def drop() -> None:
        with conn.begin():
            bound_lock_waits(conn)
            # Until the old column is dropped, new-design writes leave it empty: let them.
            if old_column_exists(conn, rename):
                conn.exec_driver_sql(f"ALTER TABLE {table} ALTER COLUMN {old} DROP NOT NULL")
            conn.exec_driver_sql(f"DROP TRIGGER IF EXISTS {fn} ON {table}")
            conn.exec_driver_sql(f"DROP FUNCTION IF EXISTS {fn}()")

    retrying_lock_waits(conn, drop)
