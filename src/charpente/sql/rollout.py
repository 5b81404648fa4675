"""The expand/contract migration under way (`charpente migrate start` … `complete`).

One row of `charpente_expansions` per `migrate start`: the design before (the last one
applied) and after, the renamed columns and how far their backfill went. While one is
under way, processes of either design may run on the database.
"""

from __future__ import annotations

import datetime
import json
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from charpente.sql.schema import UtcDateTime

__all__ = [
    "EXPANSIONS_TABLE",
    "Expansion",
    "active_expansion",
    "expansions_table",
    "may_apply",
    "save_expansion",
    "serves_side_by_side",
]

EXPANSIONS_TABLE = "charpente_expansions"

STARTED = "started"  # columns added, triggers in place, backfill running
BACKFILLED = "backfilled"  # both designs can run: `migrate complete` contracts
COMPLETING = "completing"  # the old columns are being dropped
COMPLETED = "completed"
UNDER_WAY = (STARTED, BACKFILLED, COMPLETING)


def expansions_table(metadata: sa.MetaData) -> sa.Table:
    return sa.Table(
        EXPANSIONS_TABLE,
        metadata,
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("started_at", UtcDateTime(), nullable=False),
        sa.Column("updated_at", UtcDateTime(), nullable=False),
        sa.Column("state", sa.String(20), nullable=False),
        sa.Column("old_design", sa.Text(), nullable=False),  # canonical JSON snapshots
        sa.Column("new_design", sa.Text(), nullable=False),
        sa.Column("expanded_design", sa.Text(), nullable=False),  # both columns of each rename
        sa.Column("renames", sa.Text(), nullable=False),  # JSON list of Rename fields
        sa.Column("progress", sa.Text(), nullable=False),  # JSON {"table.column": last id}
    )


@dataclass
class Expansion:
    id: int
    state: str
    old_design: str
    new_design: str
    expanded_design: str
    renames: list[dict[str, Any]]
    progress: dict[str, str]


def active_expansion(conn: sa.Connection) -> Expansion | None:
    """The expansion under way, or None (also when the table does not exist yet)."""
    if conn.dialect.name != "postgresql" or not sa.inspect(conn).has_table(EXPANSIONS_TABLE):
        return None
    t = expansions_table(sa.MetaData())
    query = sa.select(t).where(t.c.state.in_(UNDER_WAY)).order_by(t.c.id.desc()).limit(1)
    row = conn.execute(query).first()
    if row is None:
        return None
    return Expansion(
        row.id,
        row.state,
        row.old_design,
        row.new_design,
        row.expanded_design,
        json.loads(row.renames),
        json.loads(row.progress),
    )


def serves_side_by_side(expansion: Expansion, snapshot: str) -> bool:
    """Whether a process of this design may serve now: the old design until the contract
    begins, the new one once its columns are filled."""
    if snapshot == expansion.old_design:
        return expansion.state in (STARTED, BACKFILLED)
    return snapshot == expansion.new_design and expansion.state == BACKFILLED


def may_apply(expansion: Expansion, snapshot: str) -> bool:
    """Whether a migration of this design may run now: a no-op for a design being served
    side by side, `start`'s expanded design, `complete`'s new one; nothing else."""
    if serves_side_by_side(expansion, snapshot):
        return True
    if snapshot == expansion.expanded_design:
        return expansion.state == STARTED
    return snapshot == expansion.new_design and expansion.state == COMPLETING


def save_expansion(conn: sa.Connection, expansion: Expansion) -> None:
    """Write the expansion's state and progress (the caller commits)."""
    t = expansions_table(sa.MetaData())
    conn.execute(
        t.update()
        .where(t.c.id == expansion.id)
        .values(
            state=expansion.state,
            progress=json.dumps(expansion.progress, sort_keys=True),
            updated_at=datetime.datetime.now(datetime.UTC),
        )
    )
