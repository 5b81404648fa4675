"""Which designs the running `serve` processes use: a heartbeat in `charpente_processes`.

`charpente migrate complete` drops the old columns of a rename only once no process of the
old design has been seen for `STALE_AFTER_S`. PostgreSQL only (zero-downtime migrations).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import hashlib
import logging
import os
import socket
import uuid

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from charpente.design.diff import design_to_json
from charpente.design.model import Design
from charpente.sql.schema import UtcDateTime

__all__ = [
    "HEARTBEAT_S",
    "PROCESSES_TABLE",
    "STALE_AFTER_S",
    "Presence",
    "design_version",
    "ensure_processes_table",
    "live_processes",
    "processes_table",
]

PROCESSES_TABLE = "charpente_processes"
HEARTBEAT_S = 5.0
STALE_AFTER_S = 30.0  # a process not seen for this long is gone (crashed, killed)

logger = logging.getLogger("charpente.presence")


def design_version(snapshot: str) -> str:
    """A short, stable name for a design: the hash of its canonical JSON."""
    return hashlib.sha256(snapshot.encode("utf-8")).hexdigest()[:16]


def processes_table(metadata: sa.MetaData) -> sa.Table:
    return sa.Table(
        PROCESSES_TABLE,
        metadata,
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("design", sa.String(16), nullable=False),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("started_at", UtcDateTime(), nullable=False),
        sa.Column("seen_at", UtcDateTime(), nullable=False),
    )


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def ensure_processes_table(conn: sa.Connection) -> None:
    """Create the table if it is missing (processes starting together may race: fine)."""
    table = processes_table(sa.MetaData())
    with (
        contextlib.suppress(sa.exc.IntegrityError, sa.exc.ProgrammingError),
        conn.begin_nested(),
    ):
        conn.execute(sa.schema.CreateTable(table, if_not_exists=True))


def live_processes(
    conn: sa.Connection, *, other_than: str, stale_after_s: float = STALE_AFTER_S
) -> int:
    """How many processes of another design than `other_than` were seen recently (a design
    that differs from the old one in its rules only is still not the new one)."""
    if not sa.inspect(conn).has_table(PROCESSES_TABLE):
        return 0
    t = processes_table(sa.MetaData())
    since = _now() - datetime.timedelta(seconds=stale_after_s)
    query = sa.select(sa.func.count()).where(t.c.design != other_than, t.c.seen_at >= since)
    return int(conn.execute(query).scalar_one())


class Presence:
    """Registers this process's design version and beats until stopped (PostgreSQL only)."""

    def __init__(
        self, engine: AsyncEngine, design: Design, *, every_s: float = HEARTBEAT_S
    ) -> None:
        self.engine, self.every_s = engine, every_s
        self.version = design_version(design_to_json(design))
        self.id = str(uuid.uuid4())
        self._task: asyncio.Task[None] | None = None

    @property
    def enabled(self) -> bool:
        return self.engine.dialect.name == "postgresql"

    async def start(self) -> None:
        if not self.enabled:
            return
        try:
            await self._register()
        except Exception as exc:  # presence must never stop a server from starting
            logger.warning("cannot register this process's design version: %s", exc)
        self._task = asyncio.create_task(self._beat(), name="charpente-presence")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if not self.enabled:
            return
        t = processes_table(sa.MetaData())
        try:
            async with self.engine.begin() as conn:
                await conn.execute(t.delete().where(t.c.id == self.id))
        except Exception as exc:  # the row goes stale on its own
            logger.warning("cannot unregister this process: %s", exc)

    async def _register(self) -> None:
        t = processes_table(sa.MetaData())
        now = _now()
        async with self.engine.begin() as conn:
            await conn.run_sync(ensure_processes_table)
            since = now - datetime.timedelta(seconds=STALE_AFTER_S * 10)
            await conn.execute(t.delete().where(t.c.seen_at < since))  # long gone
            await conn.execute(
                t.insert().values(
                    id=self.id,
                    design=self.version,
                    host=socket.gethostname()[:255],
                    pid=os.getpid(),
                    started_at=now,
                    seen_at=now,
                )
            )

    async def _beat(self) -> None:
        t = processes_table(sa.MetaData())
        while True:
            await asyncio.sleep(self.every_s)
            try:
                async with self.engine.begin() as conn:
                    done = await conn.execute(
                        t.update().where(t.c.id == self.id).values(seen_at=_now())
                    )
                    if done.rowcount == 0:
                        await self._register()
            except Exception as exc:
                logger.warning("heartbeat failed: %s", exc)
