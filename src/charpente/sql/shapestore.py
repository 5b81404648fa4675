"""The ShapeStore port over `charpente_query_shapes`: the shape log of every process.

A flush is one transaction of `INSERT … ON CONFLICT (id) DO UPDATE` that adds the
process's counts to the stored ones (the histogram bucket by bucket), so processes
flushing at the same time add up instead of overwriting each other; rows are written in
id order, so two flushes never wait on each other in a cycle.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from charpente.runtime.shapes import ORDERS, ShapeCount, ShapeStats
from charpente.sql.database import SqlDatabase
from charpente.sql.schema import SHAPE_BUCKETS as _BUCKETS, SHAPES_TABLE

__all__ = ["SqlShapeStore"]

_ADDED = ("calls", "rows", "total_us", *_BUCKETS)


class SqlShapeStore:
    """The ShapeStore port on a SqlDatabase's connections."""

    def __init__(self, database: SqlDatabase) -> None:
        self._db = database
        table = database.metadata_tables[SHAPES_TABLE]
        self._t = table
        insert: Any = (postgresql if database.locks else sqlite).insert(table)
        new = insert.excluded
        changes: dict[str, Any] = {name: table.c[name] + new[name] for name in _ADDED}
        changes["max_us"] = sa.case((new.max_us > table.c.max_us, new.max_us), else_=table.c.max_us)
        changes["last_seen"] = new.last_seen
        self._merge = insert.on_conflict_do_update(index_elements=[table.c.id], set_=changes)
        self._merge = self._merge.values({c.name: sa.bindparam(c.name) for c in table.c})
        database.keep(self._merge)

    async def merge(self, counts: Sequence[ShapeCount], now: datetime.datetime) -> None:
        async with self._db.writer() as ex:
            for count in sorted(counts, key=lambda c: c.id):
                await ex.run(self._merge, _row(count, now))

    async def top(self, order: str, limit: int) -> list[ShapeStats]:
        if order not in ORDERS:
            raise ValueError(f"order must be one of {', '.join(ORDERS)}")
        t = self._t
        by = {
            "total": t.c.total_us.desc(),
            "slowest": (t.c.total_us / sa.func.nullif(t.c.calls, 0)).desc(),
            "calls": t.c.calls.desc(),
        }[order]
        stmt = sa.select(t).order_by(by, t.c.id).limit(sa.bindparam("_limit"))
        async with self._db.reader() as ex:
            rows = await ex.rows(stmt, {"_limit": limit})
        return [_stats(row) for row in rows]


def _row(count: ShapeCount, now: datetime.datetime) -> dict[str, Any]:
    row: dict[str, Any] = {
        "id": count.id,
        "kind": count.kind,
        "resource": count.resource,
        "spec": json.dumps(count.spec, sort_keys=True, separators=(",", ":")),
        "text": count.text,
        "calls": count.calls,
        "rows": count.rows,
        "total_us": count.total_us,
        "max_us": count.max_us,
        "first_seen": now,
        "last_seen": now,
    }
    row.update(zip(_BUCKETS, count.histogram, strict=True))
    return row


def _stats(row: dict[str, Any]) -> ShapeStats:
    first_seen, last_seen = row["first_seen"], row["last_seen"]
    assert isinstance(first_seen, datetime.datetime)
    assert isinstance(last_seen, datetime.datetime)
    return ShapeStats(
        str(row["id"]),
        str(row["kind"]),
        str(row["resource"]),
        json.loads(str(row["spec"])),
        str(row["text"]),
        int(row["calls"]),
        int(row["rows"]),
        int(row["total_us"]),
        int(row["max_us"]),
        tuple(int(row[name]) for name in _BUCKETS),
        first_seen,
        last_seen,
    )
