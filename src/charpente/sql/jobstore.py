"""The JobStore port over `charpente_jobs` (see sql.schema.job_tables).

Claiming is one short transaction: running jobs whose lease ended on their last attempt
become dead, then an UPDATE sets a lease (`claimed_until`, and the claimer's token in
`claimed_by`) on the due jobs a subquery picks among those the worker knows by name,
counting one more attempt. On PostgreSQL
the subquery locks them FOR UPDATE SKIP LOCKED, so workers claiming at the same time take
different jobs without waiting for each other; on SQLite the single writer serialises
claims. An outcome is recorded only while the claimer's token still holds the job.
"""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa

from charpente.compile.plan import Record
from charpente.runtime.ports import Job
from charpente.sql.database import SqlDatabase, canonical_id
from charpente.sql.schema import JOBS_TABLE

__all__ = ["LEASE_ENDED", "SqlJobStore"]

LEASE_ENDED = "the worker running it stopped before it finished (its lease ended)"


def _p(name: str) -> sa.BindParameter[Any]:
    return sa.bindparam(name)


class SqlJobStore:
    """The JobStore port on a SqlDatabase's connections."""

    def __init__(self, database: SqlDatabase) -> None:
        self._db = database
        j = database.metadata_tables[JOBS_TABLE]
        self._j = j
        lease_ended = sa.and_(j.c.state == "running", j.c.claimed_until < _p("_now"))
        due = (
            sa.select(j.c.id)
            .where(
                sa.or_(
                    sa.and_(j.c.state == "queued", j.c.run_at <= _p("_now")),
                    sa.and_(lease_ended, j.c.attempts < j.c.max_attempts),
                ),
                j.c.name.in_(sa.bindparam("_names", expanding=True)),
            )
            .order_by(j.c.run_at, j.c.id)
            .limit(_p("_limit"))
        )
        if database.locks:  # PostgreSQL: concurrent claimers skip each other's jobs
            due = due.with_for_update(skip_locked=True)
        released = {"claimed_until": None, "claimed_by": None}
        held = sa.and_(j.c.id == _p("_id"), j.c.claimed_by == _p("_token"), j.c.state == "running")
        finished_before = sa.and_(j.c.state == "done", j.c.finished_at < _p("_before"))
        self._s: dict[str, Any] = {
            "expire": sa.update(j)
            .where(lease_ended, j.c.attempts >= j.c.max_attempts)
            .values(state="dead", finished_at=_p("_now"), last_error=LEASE_ENDED, **released),
            "claim": sa.update(j)
            .where(j.c.id.in_(due))
            .values(
                state="running",
                attempts=j.c.attempts + 1,
                claimed_until=_p("_lease"),
                claimed_by=_p("_token"),
            )
            .returning(*_public(j)),
            "finish": sa.update(j)
            .where(held)
            .values(state="done", finished_at=_p("_now"), **released)
            .returning(j.c.id),
            "fail": sa.update(j)
            .where(held)
            .values(
                state=_p("_state"),
                run_at=_p("_run_at"),
                last_error=_p("_error"),
                finished_at=_p("_finished"),
                **released,
            )
            .returning(j.c.id),
            "job": sa.select(*_public(j)).where(j.c.id == _p("_id")),
            "prune": sa.delete(j)
            .where(j.c.id.in_(sa.select(j.c.id).where(finished_before).limit(_p("_limit"))))
            .returning(j.c.id),
        }
        for stmt in self._s.values():
            database.keep(stmt)

    async def claim_due(
        self,
        now: datetime.datetime,
        lease_until: datetime.datetime,
        token: str,
        limit: int,
        names: Sequence[str],
    ) -> list[Job]:
        params = {"_now": now, "_lease": lease_until, "_token": token, "_limit": limit}
        async with self._db.writer() as ex:
            await ex.run(self._s["expire"], {"_now": now})
            if not names:
                return []
            rows = await ex.rows(self._s["claim"], {**params, "_names": list(names)})
        found = [_job(row) for row in rows]
        found.sort(key=lambda job: (job.run_at, job.id))  # RETURNING keeps no order
        return found

    async def finish(self, id: str, token: str, now: datetime.datetime) -> bool:
        async with self._db.writer() as ex:
            row = await ex.first(self._s["finish"], {"_id": id, "_token": token, "_now": now})
        return row is not None

    async def fail(
        self,
        id: str,
        token: str,
        error: str,
        now: datetime.datetime,
        retry_at: datetime.datetime | None,
    ) -> bool:
        params = {
            "_id": id,
            "_token": token,
            "_state": "dead" if retry_at is None else "queued",
            "_run_at": now if retry_at is None else retry_at,
            "_error": error,
            "_finished": now if retry_at is None else None,
        }
        async with self._db.writer() as ex:
            return await ex.first(self._s["fail"], params) is not None

    async def job(self, id: str) -> Job | None:
        canonical = canonical_id(id)
        if canonical is None:
            return None
        async with self._db.reader() as ex:
            row = await ex.first(self._s["job"], {"_id": canonical})
        return None if row is None else _job(row)

    async def jobs(self, state: str | None, limit: int, after: str | None = None) -> list[Job]:
        j = self._j
        query = sa.select(*_public(j)).order_by(j.c.id.desc()).limit(limit)
        if state is not None:
            query = query.where(j.c.state == state)
        if after is not None:
            canonical = canonical_id(after)
            if canonical is None:
                return []
            query = query.where(j.c.id < canonical)
        async with self._db.reader() as ex:
            return [_job(row) for row in await ex.rows(query)]

    async def retry(self, now: datetime.datetime, id: str | None = None) -> int:
        j = self._j
        stmt = sa.update(j).where(j.c.state == "dead")
        if id is not None:
            canonical = canonical_id(id)
            if canonical is None:
                return 0
            stmt = stmt.where(j.c.id == canonical)
        stmt = stmt.values(
            state="queued",
            attempts=0,
            run_at=now,
            finished_at=None,
            claimed_until=None,
            claimed_by=None,
        ).returning(j.c.id)
        async with self._db.writer() as ex:
            return len(await ex.rows(stmt))

    async def prune(self, finished_before: datetime.datetime, limit: int) -> int:
        async with self._db.writer() as ex:
            rows = await ex.rows(self._s["prune"], {"_before": finished_before, "_limit": limit})
        return len(rows)


def _public(j: sa.Table) -> list[sa.Column[Any]]:
    """Every column but the claimer's token."""
    return [c for c in j.c if c.name != "claimed_by"]


def _job(row: Record) -> Job:
    values: dict[str, Any] = dict(row)  # the columns of _public: the fields of Job
    values["id"] = str(values["id"])
    return Job(**values)
