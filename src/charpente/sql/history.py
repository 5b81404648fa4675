"""The audit history and the outbox on SQL (tables in sql.schema.event_tables).

Events are appended with the write, in its transaction; `history`, `events_until` and
`events_after` read them back for /history, time travel and resumed live streams.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import msgspec
import sqlalchemy as sa

from charpente.compile.plan import Record
from charpente.runtime.events import Event, encoded_parts
from charpente.sql.executor import Executor
from charpente.sql.schema import EVENTS_TABLE, OUTBOX_TABLE

if TYPE_CHECKING:
    from charpente.sql.database import SqlDatabase

__all__ = ["EventStatements", "archive_events", "event_of_row"]

_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder(dict[str, Any]).decode


class EventStatements:
    """The history's and the outbox's statements, built once."""

    def __init__(self, tables: Mapping[str, sa.Table], *, one_statement: bool = False) -> None:
        events, outbox = tables[EVENTS_TABLE], tables[OUTBOX_TABLE]
        self.events, self.outbox = events, outbox
        self.insert_event = sa.insert(events)
        self.insert_message = sa.insert(outbox)
        # PostgreSQL takes both rows in one statement (an INSERT in a WITH): one round
        # trip per write instead of two. SQLite has no INSERT inside WITH.
        self._insert_both: sa.Insert | None = None
        if one_statement:
            appended = sa.insert(events).values(
                {c.name: sa.bindparam(f"e_{c.name}", type_=c.type) for c in events.c}
            )
            queued = {c: sa.bindparam(f"o_{c}", type_=outbox.c[c].type) for c in _QUEUED}
            self._insert_both = sa.insert(outbox).values(queued).add_cte(appended.cte("appended"))
        of_record = sa.and_(
            events.c.resource == sa.bindparam("_resource"),
            events.c.record_id == sa.bindparam("_record"),
        )
        newest = sa.select(events).where(of_record).order_by(events.c.id.desc())
        self._newest = newest.limit(sa.bindparam("_limit"))
        self._newest_before = newest.where(events.c.id < sa.bindparam("_before")).limit(
            sa.bindparam("_limit")
        )
        self._until = (
            sa.select(events)
            .where(of_record, events.c.at <= sa.bindparam("_at"))
            .order_by(events.c.id)
        )
        self._after = (
            sa.select(events)
            .where(events.c.resource == sa.bindparam("_resource"))
            .where(events.c.id > sa.bindparam("_after"))
            .order_by(events.c.id)
            .limit(sa.bindparam("_limit"))
        )

    def prebuilt(self) -> list[sa.Executable]:
        both = [] if self._insert_both is None else [self._insert_both]
        return [self._newest, self._newest_before, self._until, self._after, *both]

    async def append(self, ex: Executor, event: Event, *, outbox: bool) -> None:
        row = _event_row(event, keep_record=outbox)
        if not outbox:
            await ex.run(self.insert_event, row)
            return
        queued = {
            "id": event.id,
            "key": event.type,
            "subject": event.record_id,
            "created_at": event.at,
            "traceparent": event.traceparent,
        }
        if self._insert_both is None:
            await ex.run(self.insert_event, row)
            await ex.run(self.insert_message, queued)
            return
        params = {f"e_{k}": v for k, v in row.items()}
        params.update((f"o_{k}", v) for k, v in queued.items())
        await ex.run(self._insert_both, params)

    async def history(
        self, ex: Executor, resource: str, record_id: str, before: str | None, limit: int
    ) -> list[Event]:
        params: dict[str, object] = {"_resource": resource, "_record": record_id, "_limit": limit}
        if before is None:
            return [event_of_row(r) for r in await ex.rows(self._newest, params)]
        rows = await ex.rows(self._newest_before, {**params, "_before": before})
        return [event_of_row(r) for r in rows]

    async def until(
        self, ex: Executor, resource: str, record_id: str, at: datetime.datetime
    ) -> list[Event]:
        params = {"_resource": resource, "_record": record_id, "_at": at}
        return [event_of_row(r) for r in await ex.rows(self._until, params)]

    async def after(self, ex: Executor, resource: str, after: str, limit: int) -> list[Event]:
        params = {"_resource": resource, "_after": after, "_limit": limit}
        return [event_of_row(r) for r in await ex.rows(self._after, params)]


_QUEUED = ("id", "key", "subject", "created_at", "traceparent")


def _event_row(event: Event, *, keep_record: bool) -> dict[str, object]:
    changes, record = encoded_parts(event) if keep_record else (_encode(dict(event.changes)), b"")
    return {
        "id": event.id,
        "resource": event.resource,
        "record_id": event.record_id,
        "action": event.action,
        "at": event.at,
        "version": event.version,
        "actor": event.actor,
        "request_id": event.request_id,
        "changes": changes.decode(),
        "record": record.decode() if keep_record else None,
    }


def event_of_row(row: Record) -> Event:
    """An Event read back from its row (its `record` is kept only for resources with events)."""
    return Event(
        id=str(row["id"]),
        resource=str(row["resource"]),
        record_id=str(row["record_id"]),
        action=str(row["action"]),
        at=row["at"],  # type: ignore[arg-type]
        version=int(row["version"]),  # type: ignore[call-overload]
        changes=_decode(str(row["changes"])),
        record={} if row.get("record") is None else _decode(str(row["record"])),
        actor=None if row["actor"] is None else str(row["actor"]),
        request_id=None if row["request_id"] is None else str(row["request_id"]),
    )


ARCHIVE_BATCH = 1000


async def archive_events(
    database: SqlDatabase, before: datetime.datetime, write: Callable[[list[bytes]], None]
) -> int:
    """Move the events older than `before` out of the history: each batch is handed to
    `write` (JSON lines; it must make them durable before returning), then deleted in the
    same transaction that read it. How many were archived.

    The only deletion of history rows anywhere in the engine.
    """
    tables = database.metadata_tables
    events, outbox = tables[EVENTS_TABLE], tables[OUTBOX_TABLE]
    waiting = sa.exists().where(outbox.c.id == events.c.id)  # the relay still needs them
    oldest = (
        sa.select(events)
        .where(events.c.at < sa.bindparam("_before"), ~waiting)
        .order_by(events.c.id)
        .limit(ARCHIVE_BATCH)
    )
    remove = sa.delete(events).where(events.c.id.in_(sa.bindparam("_ids", expanding=True)))
    archived = 0
    while True:
        async with database.writer() as ex:
            rows = await ex.rows(oldest, {"_before": before})
            if not rows:
                return archived
            write([_archived_line(row) for row in rows])
            await ex.run(remove, {"_ids": [row["id"] for row in rows]})
        archived += len(rows)


def _archived_line(row: Record) -> bytes:
    """An event row as one JSON line, its JSON columns embedded as they are stored."""
    line: dict[str, object] = {name: row[name] for name in _PLAIN}
    line["changes"] = msgspec.Raw(str(row["changes"]).encode())
    if row.get("record") is not None:
        line["record"] = msgspec.Raw(str(row["record"]).encode())
    return _encode(line) + b"\n"


_PLAIN = ("id", "resource", "record_id", "action", "at", "version", "actor", "request_id")
