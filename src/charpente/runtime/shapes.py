"""The shape log: every read counted by its shape (calls, rows, a latency histogram).

`MeasuredDatabase` wraps the Database port and counts each page, read by id and expand
batch into a `ShapeLog` kept in memory: one dictionary lookup and a few integer additions
per query, no lock (the event loop runs one task at a time) and no values kept. A
`ShapeFlusher` moves the counts to a `ShapeStore` (the `charpente_query_shapes` table)
periodically and at stop, where the counts of every process add up.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import logging
from bisect import bisect_left
from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from time import perf_counter_ns
from typing import Any, Protocol

from charpente.compile.plan import GetQuery, ListQuery, Page, Record
from charpente.compile.shapes import (
    Shape,
    describe_shape,
    get_shape,
    ids_shape,
    list_shape,
    shape_id,
    shape_spec,
)
from charpente.design.expr import Expr
from charpente.design.model import ADMIN_ROLE
from charpente.errors import BadRequest, Forbidden, Unauthorized
from charpente.runtime.caller import Caller
from charpente.runtime.events import Event
from charpente.runtime.ports import Clock, Database, Transaction

__all__ = [
    "BUCKETS_US",
    "MAX_SHAPES",
    "ORDERS",
    "MeasuredDatabase",
    "ShapeCount",
    "ShapeFlusher",
    "ShapeLog",
    "ShapeReport",
    "ShapeStats",
    "ShapeStore",
    "quantile_ms",
]

BUCKETS_US = (250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000,
              500_000, 1_000_000)  # fmt: skip
"""Upper bounds of the latency histogram's buckets (µs); one more bucket holds the rest."""

ORDERS = ("total", "slowest", "calls")
"""How shapes can be ranked: total time, mean time, number of calls."""
MAX_REPORTED = 200  # shapes one report shows at most
MAX_SHAPES = 2_000  # shapes counted per process between flushes; new ones beyond are dropped
_BOUNDS_NS = tuple(b * 1_000 for b in BUCKETS_US)
_CALLS, _ROWS, _TOTAL, _MAX, _HIST = 0, 1, 2, 3, 4

logger = logging.getLogger("charpente.shapes")


@dataclass(frozen=True, slots=True)
class ShapeCount:
    """What one process counted for one shape since its last flush."""

    id: str
    kind: str
    resource: str
    spec: dict[str, Any]
    text: str
    calls: int
    rows: int
    total_us: int
    max_us: int
    histogram: tuple[int, ...]  # len(BUCKETS_US) + 1 counts


@dataclass(frozen=True, slots=True)
class ShapeStats:
    """A shape's counts merged across processes, as the store keeps them."""

    id: str
    kind: str
    resource: str
    spec: dict[str, Any]
    text: str
    calls: int
    rows: int
    total_us: int
    max_us: int
    histogram: tuple[int, ...]
    first_seen: datetime.datetime
    last_seen: datetime.datetime

    def summary(self) -> dict[str, object]:
        """JSON-ready: the figures `charpente shapes` and the admin API show."""
        calls = max(self.calls, 1)
        return {
            "id": self.id,
            "kind": self.kind,
            "resource": self.resource,
            "shape": self.text,
            "calls": self.calls,
            "rows": self.rows,
            "rows_per_call": round(self.rows / calls, 1),
            "total_ms": round(self.total_us / 1000, 1),
            "mean_ms": round(self.total_us / calls / 1000, 3),
            "p50_ms": quantile_ms(self.histogram, 0.5, self.max_us),
            "p99_ms": quantile_ms(self.histogram, 0.99, self.max_us),
            "max_ms": round(self.max_us / 1000, 3),
            "first_seen": _iso(self.first_seen),
            "last_seen": _iso(self.last_seen),
            "spec": self.spec,
        }


def _iso(moment: datetime.datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def quantile_ms(histogram: Sequence[int], q: float, max_us: int) -> float:
    """The upper bound of the bucket holding quantile `q` (ms), the maximum for the last one."""
    total = sum(histogram)
    if total == 0:
        return 0.0
    wanted, seen = q * total, 0
    for i, count in enumerate(histogram):
        seen += count
        if seen >= wanted:
            bound = BUCKETS_US[i] if i < len(BUCKETS_US) else max_us
            return round(min(bound, max_us) / 1000, 3)
    return round(max_us / 1000, 3)


class ShapeStore(Protocol):
    """Where the counts of every process add up (`charpente_query_shapes`)."""

    async def merge(self, counts: Sequence[ShapeCount], now: datetime.datetime) -> None:
        """Add `counts` to what is stored, in one transaction."""

    async def top(self, order: str, limit: int) -> list[ShapeStats]:
        """The shapes with the highest `order` ("total": total time; "slowest": mean time)."""


class ShapeLog:
    """Counts per shape in this process. `add` is the per-query cost: keep it small."""

    def __init__(self, max_shapes: int = MAX_SHAPES) -> None:
        self._max = max_shapes
        self._counts: dict[Shape, list[int]] = {}
        self._pending: dict[str, ShapeCount] = {}  # put back after a failed flush
        self.dropped = 0  # queries of shapes beyond max_shapes, since the start

    def add(self, shape: Shape, rows: int, elapsed_ns: int) -> None:
        """Count one query of `shape` that returned `rows` rows in `elapsed_ns`."""
        counts = self._counts.get(shape)
        if counts is None:
            if len(self._counts) >= self._max:
                self.dropped += 1
                return
            counts = self._counts[shape] = [0] * (_HIST + len(BUCKETS_US) + 1)
        counts[_CALLS] += 1
        counts[_ROWS] += rows
        counts[_TOTAL] += elapsed_ns
        if elapsed_ns > counts[_MAX]:
            counts[_MAX] = elapsed_ns
        counts[_HIST + bisect_left(_BOUNDS_NS, elapsed_ns)] += 1

    def take(self) -> list[ShapeCount]:
        """Everything counted since the last take, leaving the log empty."""
        taken, self._counts = self._counts, {}
        return [_count(shape, counts) for shape, counts in taken.items()]

    def put_back(self, counts: Sequence[ShapeCount]) -> None:
        """Counts a flush could not store: kept for the next one (while there is room)."""
        for count in counts:
            if len(self._pending) >= self._max:
                return
            self._pending[count.id] = count

    def take_all(self) -> list[ShapeCount]:
        """`take`, plus the counts put back by a failed flush (merged by shape id)."""
        merged, self._pending = self._pending, {}
        for count in self.take():
            old = merged.get(count.id)
            merged[count.id] = count if old is None else _added(old, count)
        return list(merged.values())


def _count(shape: Shape, counts: list[int]) -> ShapeCount:
    spec = shape_spec(shape)
    return ShapeCount(
        shape_id(spec),
        spec["kind"],
        spec["resource"],
        spec,
        describe_shape(spec),
        counts[_CALLS],
        counts[_ROWS],
        counts[_TOTAL] // 1_000,
        counts[_MAX] // 1_000,
        tuple(counts[_HIST:]),
    )


def _added(a: ShapeCount, b: ShapeCount) -> ShapeCount:
    return ShapeCount(
        a.id,
        a.kind,
        a.resource,
        a.spec,
        a.text,
        a.calls + b.calls,
        a.rows + b.rows,
        a.total_us + b.total_us,
        max(a.max_us, b.max_us),
        tuple(x + y for x, y in zip(a.histogram, b.histogram, strict=True)),
    )


class MeasuredDatabase:
    """The Database port, counting every read into a ShapeLog; the rest passes through."""

    def __init__(self, database: Database, log: ShapeLog) -> None:
        self.inner = database
        self.log = log

    async def select_page(self, query: ListQuery) -> Page:
        start = perf_counter_ns()
        page = await self.inner.select_page(query)
        self.log.add(list_shape(query), len(page.rows), perf_counter_ns() - start)
        return page

    async def select_one(self, query: GetQuery) -> Record | None:
        start = perf_counter_ns()
        found = await self.inner.select_one(query)
        self.log.add(get_shape(query), 0 if found is None else 1, perf_counter_ns() - start)
        return found

    async def select_by_ids(
        self,
        resource: str,
        ids: Sequence[str],
        fields: tuple[str, ...] | None = None,
        where: Expr | None = None,
    ) -> list[Record]:
        start = perf_counter_ns()
        found = await self.inner.select_by_ids(resource, ids, fields, where)
        self.log.add(ids_shape(resource, where), len(found), perf_counter_ns() - start)
        return found

    async def select_pages(
        self, query: ListQuery, via: str, parents: Sequence[str]
    ) -> dict[str, Page]:
        start = perf_counter_ns()
        pages = await self.inner.select_pages(query, via, parents)
        rows = sum(len(page.rows) for page in pages.values())
        self.log.add(list_shape(query), rows, perf_counter_ns() - start)
        return pages

    async def history(
        self, resource: str, record_id: str, before: str | None, limit: int
    ) -> list[Event]:
        return await self.inner.history(resource, record_id, before, limit)

    async def events_until(
        self, resource: str, record_id: str, at: datetime.datetime
    ) -> list[Event]:
        return await self.inner.events_until(resource, record_id, at)

    async def events_after(self, resource: str, after: str, limit: int) -> list[Event]:
        return await self.inner.events_after(resource, after, limit)

    def transaction(self) -> AbstractAsyncContextManager[Transaction]:
        return self.inner.transaction()

    async def ping(self) -> None:
        await self.inner.ping()

    async def close(self) -> None:
        await self.inner.close()


class ShapeFlusher:
    """Moves a ShapeLog's counts to the store every `every` seconds and once at stop."""

    def __init__(self, log: ShapeLog, store: ShapeStore, every: float, clock: Clock) -> None:
        self.log = log
        self.store = store
        self.every = every
        self.clock = clock
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def flush(self) -> int:
        """Store what was counted; how many shapes. On failure the counts are kept."""
        counts = self.log.take_all()
        if not counts:
            return 0
        try:
            await self.store.merge(counts, self.clock.now())
        except Exception:
            self.log.put_back(counts)
            raise
        return len(counts)

    async def start(self) -> None:
        self._stop.clear()
        self._task = asyncio.create_task(self._run(), name="charpente-shapes")

    async def stop(self) -> None:
        self._stop.set()
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        try:
            await self.flush()
        except Exception:  # stopping must go on: the counts of this process are lost
            logger.exception("could not store the query shapes at stop")

    async def _run(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), self.every)
            if self._stop.is_set():
                return
            try:
                await self.flush()
            except Exception:
                logger.exception("could not store the query shapes; keeping them for next time")


class ShapeReport:
    """The slowest and most expensive shapes, for admins (`GET /v1/_admin/shapes`)."""

    def __init__(self, store: ShapeStore, flusher: ShapeFlusher | None = None) -> None:
        self.store = store
        self.flusher = flusher

    async def top(self, caller: Caller, order: str = "total", limit: int = 20) -> list[ShapeStats]:
        """The `limit` highest shapes by `order`, this process's latest counts included."""
        if not (caller.system or caller.role == ADMIN_ROLE):
            if not caller.signed_in:
                raise Unauthorized(detail="sign in first", headers={"WWW-Authenticate": "Bearer"})
            raise Forbidden(detail="only admins read the shape log")
        if order not in ORDERS:
            raise BadRequest(detail=f"order must be one of {', '.join(ORDERS)}")
        if not 1 <= limit <= MAX_REPORTED:
            raise BadRequest(detail=f"limit must be between 1 and {MAX_REPORTED}")
        if self.flusher is not None:
            await self.flusher.flush()
        return await self.store.top(order, limit)
