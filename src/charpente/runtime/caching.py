"""The response cache: GET answers of cached resources, invalidated by generations.

Each resource has a generation (a counter in the `Cache`). An entry's key holds the
generations of every resource its answer depends on (its own, the resources it refers to
— what `expand` reads — and those its access rules read through `exists()`), the request
(path and query) and, when a rule reads the caller, the caller's id and role; never the
token. A write bumps, after its commit and before its 2xx, its own resource, the
resources it refers to (counters) and those that refer to it (cascades): later readers
compute new keys, so no read that starts after a write's answer sees the older version.
A fill stores its entry only if the generations it read before querying have not moved.
Values are bytes (msgspec-encoded), never pickled; the in-process adapter is bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import hashlib
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol

import msgspec

from charpente.design.expr import Call, Compare, Expr, Name, Not
from charpente.design.model import Design, Kind, Resource
from charpente.runtime.caller import Caller
from charpente.runtime.ports import Clock

__all__ = [
    "Cache",
    "CacheEntry",
    "CacheError",
    "CachePlan",
    "CacheRepair",
    "MemoryCache",
    "ResponseCache",
    "WriteLog",
]

logger = logging.getLogger("charpente.cache")

MAX_ENTRIES = 10_000  # the in-process adapter's bound
REPAIR_EVERY = 5.0  # seconds between two passes of CacheRepair
REPAIR_WINDOW = 120.0  # seconds of writes each pass reads (a commit may come late)
REPAIR_BATCH = 10_000
DEGRADED_FOR = 30.0  # seconds /readyz says `degraded` after the cache last failed
_WAIT_FOR_FILL = 1.0  # seconds a request waits for another one filling the same key


class CacheError(Exception):
    """The cache cannot be reached: the request goes on without it."""


class Cache(Protocol):
    """Generations and entries (a port: in-process, or Redis shared by every process)."""

    async def generations(self, names: Sequence[str]) -> tuple[int, ...]:
        """The current generation of each resource (0 before its first write)."""

    async def get(self, key: str) -> bytes | None:
        """The entry stored under `key`, if it is there and fresh."""

    async def fill(
        self, key: str, value: bytes, ttl: float, names: Sequence[str], seen: Sequence[int]
    ) -> bool:
        """Store `value` for `ttl` seconds, only if `names` still have the generations
        `seen` (one atomic step); whether it was stored."""

    async def bump(self, names: Sequence[str]) -> None:
        """Move each resource to its next generation."""


@dataclass(frozen=True, slots=True)
class CacheEntry:
    """A cached 200 answer: its body, ETag and Link header."""

    body: bytes
    etag: str
    link: str = ""


@dataclass(frozen=True, slots=True)
class CachePlan:
    """What one resource's cached answers depend on."""

    ttl: float
    depends_on: tuple[str, ...]  # resources whose generations are in the key
    reads_caller: bool  # a rule reads auth.*: the caller's id and role are in the key
    stale: float = 0.0  # seconds an answer may be served while another request recomputes


class MemoryCache:
    """The Cache port in this process (the embedded default): at most `max_entries`."""

    def __init__(self, max_entries: int = MAX_ENTRIES) -> None:
        self._generations: dict[str, int] = {}
        self._entries: OrderedDict[str, tuple[float, bytes]] = OrderedDict()
        self._max = max_entries

    async def generations(self, names: Sequence[str]) -> tuple[int, ...]:
        return tuple(self._generations.get(n, 0) for n in names)

    async def get(self, key: str) -> bytes | None:
        found = self._entries.get(key)
        if found is None:
            return None
        if found[0] < time.monotonic():
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        return found[1]

    async def fill(
        self, key: str, value: bytes, ttl: float, names: Sequence[str], seen: Sequence[int]
    ) -> bool:
        if await self.generations(names) != tuple(seen):
            return False
        self._entries[key] = (time.monotonic() + ttl, value)
        self._entries.move_to_end(key)
        while len(self._entries) > self._max:
            self._entries.popitem(last=False)
        return True

    async def bump(self, names: Sequence[str]) -> None:
        for name in names:
            self._generations[name] = self._generations.get(name, 0) + 1


class ResponseCache:
    """Cached GET answers of the design's cached resources, over a Cache port."""

    def __init__(self, design: Design, cache: Cache) -> None:
        self.cache = cache
        self.plans = cache_plans(design)
        self._bumps = write_reach(design)
        self.bypassed = 0  # cache operations that failed (the request went on without it)
        self._failed_at: float | None = None
        self._filling: dict[str, asyncio.Future[CacheEntry | None]] = {}
        self._background: set[asyncio.Task[None]] = set()  # stale-while-revalidate refills

    def key(self, resource: str, request: str, caller: Caller) -> str:
        """The request's key, without generations (see `lookup`)."""
        plan = self.plans[resource]
        who = f"{caller.id}\x00{caller.role}" if plan.reads_caller else ""
        return f"{resource}\x00{request}\x00{who}"

    async def answer(
        self,
        resource: str,
        request_key: str,
        compute: Callable[[], Awaitable[CacheEntry | None]],
    ) -> CacheEntry | None:
        """The cached answer, or `compute()`'s (stored when it is not None). One request per
        key computes while the others wait for it (briefly); a failing cache is bypassed."""
        plan = self.plans[resource]
        try:
            seen = await self.cache.generations(plan.depends_on)
            key = _digest(request_key, plan.depends_on, seen)
            found = await self.cache.get(key)
        except CacheError:
            self._failed()
            return await compute()
        entry = None if found is None else _decoded(found)
        if entry is not None:
            return entry
        if plan.stale > 0:
            previous = await self._previous(request_key)
            if previous is not None:  # stale-while-revalidate: refill in the background
                if key not in self._filling:
                    self._refill(key, request_key, plan, seen, compute)
                return previous
        waiting = self._filling.get(key)
        if waiting is not None:
            # Another request is computing this answer: take it (or compute after all).
            with contextlib.suppress(Exception):
                return await asyncio.wait_for(asyncio.shield(waiting), _WAIT_FOR_FILL)
            return await compute()
        return await self._fill(key, plan, seen, compute, request_key)

    async def _previous(self, request_key: str) -> CacheEntry | None:
        try:
            found = await self.cache.get(_latest(request_key))
        except CacheError:
            self._failed()
            return None
        return None if found is None else _decoded(found)

    def _refill(
        self,
        key: str,
        request_key: str,
        plan: CachePlan,
        seen: tuple[int, ...],
        compute: Callable[[], Awaitable[CacheEntry | None]],
    ) -> None:
        async def refill() -> None:
            with contextlib.suppress(Exception):  # the next request computes it instead
                await self._fill(key, plan, seen, compute, request_key)

        task = asyncio.create_task(refill())
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _fill(
        self,
        key: str,
        plan: CachePlan,
        seen: tuple[int, ...],
        compute: Callable[[], Awaitable[CacheEntry | None]],
        request_key: str,
    ) -> CacheEntry | None:
        flight: asyncio.Future[CacheEntry | None] = asyncio.get_running_loop().create_future()
        self._filling[key] = flight
        try:
            entry = await compute()
            flight.set_result(entry)
        except Exception as exc:
            flight.set_exception(exc)
            flight.exception()  # retrieved here: the waiters compute on their own
            raise
        finally:
            if not flight.done():
                flight.cancel()
            self._filling.pop(key, None)
        if entry is not None:
            value = _encoded(entry)
            try:
                stored = await self.cache.fill(key, value, plan.ttl, plan.depends_on, seen)
                if stored and plan.stale > 0:  # what others get while it is recomputed
                    await self.cache.fill(_latest(request_key), value, plan.stale, (), ())
            except CacheError:
                self._failed()
        return entry

    def status(self) -> dict[str, object]:
        """For /readyz: `degraded` while the cache failed in the last DEGRADED_FOR seconds."""
        recent = self._failed_at is not None and time.monotonic() - self._failed_at < DEGRADED_FOR
        return {"state": "degraded" if recent else "ok", "bypassed": self.bypassed}

    def _failed(self) -> None:
        self.bypassed += 1
        self._failed_at = time.monotonic()

    async def written(self, resource: str) -> None:
        """After a write of `resource` commits: bump what its answers can change."""
        names = self._bumps.get(resource, (resource,))
        try:
            await self.cache.bump(names)
        except CacheError:
            self._failed()  # entries already stored expire with their TTL


def cache_plans(design: Design) -> dict[str, CachePlan]:
    """The plan of every cached resource. A resource with encrypted fields, or referring to
    one that has some (expand would inline them), is not cached: its answers hold the
    opened values, which must not sit in a cache."""
    plans = {}
    for name, resource in design.resources.items():
        related = [name, *_refs(resource)]
        sealed = any(f.encrypted for r in related for f in design.resources[r].fields)
        if resource.cache is None or sealed:
            continue
        depends = dict.fromkeys(related)
        for other in related:
            for target in _exists_targets(design.resources[other]):
                depends.setdefault(target)
        reads_caller = any(_reads_auth(design.resources[r]) for r in related)
        policy = resource.cache
        plans[name] = CachePlan(policy.ttl, tuple(depends), reads_caller, policy.stale)
    return plans


def write_reach(design: Design) -> dict[str, tuple[str, ...]]:
    """For each resource, the generations a write of it bumps: its own, those it refers to
    (counters) and those that refer to it (cascades, set null)."""
    reach: dict[str, dict[str, None]] = {n: {n: None} for n in design.resources}
    for name, resource in design.resources.items():
        for target in _refs(resource):
            reach[name].setdefault(target)
            reach[target].setdefault(name)
    return {n: tuple(found) for n, found in reach.items()}


def _refs(resource: Resource) -> list[str]:
    return [f.ref for f in resource.fields if f.kind is Kind.REF and f.ref]


def _rules(resource: Resource) -> Iterator[Expr]:
    if resource.access is None:
        return
    for action in ("list", "get"):
        rule = resource.access.rules.get(action)
        if rule is not None:
            yield rule.expr
    for rule in resource.access.fields_read.values():
        yield rule.expr


def _reads_auth(resource: Resource) -> bool:
    if resource.access is None or not resource.access.declared:
        return True  # admin-only defaults depend on the caller's role
    return any(name[0] == "auth" for expr in _rules(resource) for name in _names(expr))


def _exists_targets(resource: Resource) -> list[str]:
    found = []
    for expr in _rules(resource):
        for node in _nodes(expr):
            if isinstance(node, Call) and node.name == "exists" and node.args:
                target = node.args[0]
                if isinstance(target, Name):
                    found.append(target.path[0])
    return found


def _names(expr: Expr) -> Iterator[tuple[str, ...]]:
    for node in _nodes(expr):
        if isinstance(node, Name):
            yield node.path


def _nodes(expr: Expr) -> Iterator[Expr]:
    yield expr
    for child in _children(expr):
        yield from _nodes(child)


def _children(expr: Expr) -> Sequence[Expr]:
    if isinstance(expr, Compare):
        return (expr.left, expr.right)
    if isinstance(expr, Not):
        return (expr.operand,)
    if isinstance(expr, Call):
        return expr.args
    left, right = getattr(expr, "left", None), getattr(expr, "right", None)
    return tuple(e for e in (left, right) if e is not None)


def _digest(request_key: str, names: Sequence[str], seen: Sequence[int]) -> str:
    generations = ",".join(f"{n}={g}" for n, g in zip(names, seen, strict=True))
    text = f"{request_key}\x00{generations}".encode()
    return hashlib.sha256(text).hexdigest()


def _latest(request_key: str) -> str:
    """Where a request's latest answer is kept (any generations), for `stale`."""
    return "latest:" + hashlib.sha256(request_key.encode()).hexdigest()


def _encoded(entry: CacheEntry) -> bytes:
    return msgspec.msgpack.encode((entry.body, entry.etag, entry.link))


def _decoded(value: bytes) -> CacheEntry | None:
    try:
        body, etag, link = msgspec.msgpack.decode(value, type=tuple[bytes, str, str])
    except msgspec.DecodeError:
        return None
    return CacheEntry(body, etag, link)


class WriteLog(Protocol):
    """The writes every process committed (the audit history, which records each one)."""

    async def written_since(
        self, since: datetime.datetime, limit: int
    ) -> list[tuple[str, str, datetime.datetime]]:
        """(event id, resource, time) of the writes recorded at or after `since`, newest
        first, at most `limit`."""


class CacheRepair:
    """Bumps again, every `every` seconds, for the writes of the last `window` seconds that
    this loop has not seen yet: a process that died between a commit and its bump (or a
    bump Redis missed) leaves a stale entry for at most about `every` seconds."""

    def __init__(
        self,
        cache: ResponseCache,
        log: WriteLog,
        clock: Clock,
        every: float = REPAIR_EVERY,
        window: float = REPAIR_WINDOW,
    ) -> None:
        self.cache, self.log, self.clock = cache, log, clock
        self.every, self.window = every, datetime.timedelta(seconds=window)
        self._seen: dict[str, datetime.datetime] = {}
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def repair(self) -> int:
        """One pass; how many resources it bumped."""
        now = self.clock.now()
        found = await self.log.written_since(now - self.window, REPAIR_BATCH)
        resources = {r for event, r, _ in found if event not in self._seen}
        for event, _, at in found:
            self._seen[event] = at
        horizon = now - self.window
        self._seen = {e: at for e, at in self._seen.items() if at >= horizon}
        for resource in sorted(resources):
            await self.cache.written(resource)
        return len(resources)

    async def start(self) -> None:
        self._stop.clear()
        self._task = asyncio.create_task(self._run(), name="charpente-cache-repair")

    async def stop(self) -> None:
        self._stop.set()
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def _run(self) -> None:
        while not self._stop.is_set():
            try:
                await self.repair()
            except Exception:  # the database is away: the next pass tries again
                logger.warning("the response cache could not read recent writes", exc_info=True)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), self.every)
