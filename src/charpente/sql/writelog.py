"""The WriteLog port over the audit history (`charpente_events`), which holds every write."""

from __future__ import annotations

import datetime
from typing import Any

import sqlalchemy as sa

from charpente.sql.database import SqlDatabase
from charpente.sql.schema import EVENTS_TABLE

__all__ = ["SqlWriteLog"]


class SqlWriteLog:
    """Recent writes, read through the history's `at` index."""

    def __init__(self, database: SqlDatabase) -> None:
        self._db = database
        events = database.metadata_tables[EVENTS_TABLE]
        self._recent = (
            sa.select(events.c.id, events.c.resource, events.c.at)
            .where(events.c.at >= sa.bindparam("_since", type_=events.c.at.type))
            .order_by(events.c.at.desc())
            .limit(sa.bindparam("_limit"))
        )
        database.keep(self._recent)

    async def written_since(
        self, since: datetime.datetime, limit: int
    ) -> list[tuple[str, str, datetime.datetime]]:
        async with self._db.reader() as ex:
            rows: list[dict[str, Any]] = await ex.rows(
                self._recent, {"_since": since, "_limit": limit}
            )
        return [(str(r["id"]), str(r["resource"]), r["at"]) for r in rows]
