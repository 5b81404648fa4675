"""Job test helpers: a Service with hooks, the SQL job store and runners, on every dialect.

`open_queues(target)` yields `make(hooks)`, which builds one over the target's database
(tables created); each call opens its own engine, as another process would.
"""

from __future__ import annotations

import contextlib
import datetime
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from charpente.loader import load_design_text
from charpente.runtime.hooks import Hooks
from charpente.runtime.jobs import JobRunner, RunnerOptions
from charpente.runtime.ports import Job
from charpente.runtime.service import Service
from charpente.sql.database import SqlDatabase
from charpente.sql.engine import create_engine
from charpente.sql.jobstore import SqlJobStore
from charpente.sql.schema import build_metadata

SHOP = """
charpente: 1
name: shop
api_version: 1
resources:
  users:
    access: {read: true, create: true, update: true, delete: true}
    fields:
      handle: {type: string, required: true, unique: true, max_length: 30}
"""


@dataclass
class Queue:
    """A service whose hooks queue jobs, the store they go to, and a way to make runners."""

    service: Service
    store: SqlJobStore
    database: SqlDatabase
    engine: AsyncEngine
    dialect: str

    def runner(self, **options: Any) -> JobRunner:
        return JobRunner(self.service, self.store, RunnerOptions(**options))

    async def all_jobs(self) -> list[Job]:
        return list(reversed(await self.store.jobs(None, 1000)))

    async def only_job(self) -> Job:
        jobs = await self.all_jobs()
        assert len(jobs) == 1, jobs
        return jobs[0]

    async def count_rows(self, table: str) -> int:
        async with self.engine.connect() as conn:
            stmt = sa.select(sa.func.count()).select_from(sa.table(table))
            return int((await conn.execute(stmt)).scalar_one())


MakeQueue = Callable[..., Awaitable[Queue]]


def now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


@contextlib.asynccontextmanager
async def open_queues(target: Any) -> AsyncIterator[MakeQueue]:
    built: list[Queue] = []
    design = load_design_text(SHOP)

    async def make(hooks: Hooks | None = None) -> Queue:
        engine = create_engine(target.url, schema=target.schema)
        if not built:
            async with engine.begin() as conn:
                await conn.run_sync(build_metadata(design).create_all)
        database = SqlDatabase(engine, design)
        service = Service(design, database, hooks=hooks)
        queue = Queue(service, SqlJobStore(database), database, engine, target.dialect)
        built.append(queue)
        return queue

    try:
        yield make
    finally:
        for queue in built:
            await queue.database.close()
