"""The Outbox port over SQL: claiming batches of outbox rows for the relay.

On PostgreSQL a batch is claimed in a transaction with `FOR UPDATE SKIP LOCKED` and held
while it is published: several relays take disjoint batches, and a relay that dies mid-batch
loses its lock with its connection, so its rows are simply claimed again. A row is kept in a
batch only when every earlier unpublished row of its subject (its record) is in the batch
too, so two relays never publish one record's events out of order.

On SQLite (one writer) the batch is read without holding the write lock while it is
published, and removed afterwards in a short write transaction.
"""

from __future__ import annotations

import datetime
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from charpente.runtime.events import Event, Message, to_cloudevent
from charpente.runtime.ports import Transaction
from charpente.sql.database import SqlDatabase
from charpente.sql.executor import Executor
from charpente.sql.schema import EVENTS_TABLE, OUTBOX_TABLE

__all__ = ["SqlOutbox"]

FanOut = Callable[[Transaction, Sequence[Message]], Awaitable[None]]


_EVENT_COLUMNS = (
    *("id", "resource", "record_id", "action", "at", "version", "actor", "request_id"),
    *("changes", "record"),
)


def _event(row: Mapping[str, Any]) -> Event:
    """The event of a claimed row, its JSON parts kept as they are stored (not decoded)."""
    record = row["record"]
    return Event(
        id=str(row["id"]),
        resource=str(row["resource"]),
        record_id=str(row["record_id"]),
        action=str(row["action"]),
        at=row["at"],
        version=int(row["version"]),
        actor=None if row["actor"] is None else str(row["actor"]),
        request_id=None if row["request_id"] is None else str(row["request_id"]),
        encoded=(str(row["changes"]).encode(), b"{}" if record is None else str(record).encode()),
        traceparent=row.get("traceparent"),
    )


def _among(column: sa.Column[Any], name: str, array: bool) -> sa.ColumnElement[bool]:
    """`column` is one of the list bound as `name`: `= ANY(array)` on PostgreSQL (one
    statement for every length), an expanding IN elsewhere."""
    if array:
        return column == sa.any_(sa.bindparam(name, type_=postgresql.ARRAY(column.type)))
    return column.in_(sa.bindparam(name, expanding=True))


class _Batch:
    """Claimed outbox rows, oldest first (implements runtime.ports.OutboxBatch)."""

    def __init__(self, outbox: SqlOutbox, rows: list[dict[str, Any]], ex: Executor | None) -> None:
        self._outbox, self._rows, self._ex = outbox, rows, ex
        self.messages: Sequence[Message] = [to_cloudevent(_event(r), outbox.source) for r in rows]

    async def done(self, count: int, fan_out: FanOut | None = None) -> None:
        """Remove the first `count` messages (published), after `fan_out` in the same
        transaction (webhook deliveries are created exactly when their rows go)."""
        if count <= 0:
            return
        seqs = [r["seq"] for r in self._rows[:count]]
        sent = self.messages[:count]
        if self._ex is not None:
            await self._outbox.remove(self._ex, seqs, sent, fan_out)
            return
        async with self._outbox.database.writer() as ex:
            await self._outbox.remove(ex, seqs, sent, fan_out)


class SqlOutbox:
    """Batches of the outbox for the relay; `oldest()` for its lag."""

    def __init__(self, database: SqlDatabase, source: str) -> None:
        self.database, self.source = database, source
        table = database.metadata_tables[OUTBOX_TABLE]
        events = database.metadata_tables[EVENTS_TABLE]
        self._table = table
        # what a message is made of: the outbox row's order, the history row's content
        columns = (
            *(table.c.seq, table.c.subject, table.c.traceparent),
            *(events.c[n] for n in _EVENT_COLUMNS),
        )
        head = (
            sa.select(*columns)
            .select_from(table.join(events, events.c.id == table.c.id))
            .order_by(table.c.seq)
            .limit(sa.bindparam("_limit"))
        )
        self._claim = head
        if database.locks:
            self._claim = head.with_for_update(skip_locked=True, of=table)
        self._pending_of = (
            sa.select(table.c.subject, table.c.seq)
            .where(_among(table.c.subject, "_subjects", database.locks))
            .where(table.c.seq <= sa.bindparam("_max"))
        )
        self._remove = sa.delete(table).where(_among(table.c.seq, "_seqs", database.locks))
        self._oldest = sa.select(table.c.created_at).order_by(table.c.seq).limit(1)
        self._count = sa.select(sa.func.count()).select_from(table)
        for stmt in (self._claim, self._oldest, self._count):
            database.keep(stmt)
        if database.locks:  # one SQL text whatever the batch: compiled and prepared once
            database.keep(self._pending_of)
            database.keep(self._remove)

    def claim(self, limit: int) -> AbstractAsyncContextManager[_Batch]:
        """The oldest unpublished messages that this relay may publish now (at most `limit`)."""
        return self._claimed(limit)

    @asynccontextmanager
    async def _claimed(self, limit: int) -> AsyncIterator[_Batch]:
        if not self.database.locks:  # SQLite: read now, remove after publishing
            async with self.database.reader() as ex:
                rows = await ex.rows(self._claim, {"_limit": limit})
            yield _Batch(self, rows, None)
            return
        async with self.database.writer() as ex:
            rows = await ex.rows(self._claim, {"_limit": limit})
            yield _Batch(self, await self._in_order(ex, rows), ex)

    async def _in_order(self, ex: Executor, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The claimed rows whose subject's earlier rows are all claimed here too."""
        if not rows:
            return rows
        mine = {r["seq"] for r in rows}
        params = {"_subjects": list({r["subject"] for r in rows}), "_max": max(mine)}
        pending: dict[str, list[int]] = {}
        for row in await ex.rows(self._pending_of, params):
            pending.setdefault(str(row["subject"]), []).append(cast(int, row["seq"]))
        allowed: set[int] = set()
        for seqs in pending.values():
            for seq in sorted(seqs):
                if seq not in mine:
                    break  # another relay holds an earlier event of this record
                allowed.add(seq)
        return [r for r in rows if r["seq"] in allowed]

    async def remove(
        self, ex: Executor, seqs: list[Any], sent: Sequence[Message], fan_out: FanOut | None
    ) -> None:
        if fan_out is not None:
            await fan_out(self.database.transaction_on(ex), sent)
        await ex.run(self._remove, {"_seqs": seqs})

    async def oldest(self) -> datetime.datetime | None:
        """When the oldest unpublished message was written, or None when all are published."""
        async with self.database.reader() as ex:
            row = await ex.first(self._oldest)
        return None if row is None else cast(datetime.datetime, row["created_at"])

    async def pending(self) -> int:
        async with self.database.reader() as ex:
            return int(await ex.scalar(self._count))
