"""Readiness: whether this process should be sent traffic, component by component.

A component is `ok`, `degraded` (shown, but the process stays ready: writes keep working
while the broker or Redis is down) or `down` (the process is not ready: the database does
not answer, or lacks what the design uses). While the process drains it is not ready,
whatever its components say. Each check gets `timeout` seconds; one that takes longer is
`down` if it is required, else `degraded`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field

__all__ = ["BEHIND", "Component", "DesignWatch", "Health", "Report", "timed"]

logger = logging.getLogger("charpente.health")

OK, DEGRADED, DOWN = "ok", "degraded", "down"
BEHIND = "the database is behind the design"


@dataclass(frozen=True, slots=True)
class Component:
    """One part of the process as a check saw it; `reason` is safe to show anyone."""

    name: str
    status: str  # ok | degraded | down
    details: Mapping[str, object] = field(default_factory=dict)
    reason: str | None = None

    def as_dict(self) -> dict[str, object]:
        shown: dict[str, object] = {"status": self.status, **self.details}
        if self.reason is not None:
            shown["reason"] = self.reason
        return shown


Check = Callable[[], Awaitable[Component]]


@dataclass(frozen=True, slots=True)
class Report:
    """The answer of one readiness check: ready or not, why not, and every component."""

    ready: bool
    reason: str | None
    components: tuple[Component, ...]

    def details(self) -> dict[str, object]:
        return {c.name: c.as_dict() for c in self.components}


class Health:
    """The checks /readyz runs, and the drain that makes the process not ready at once."""

    def __init__(self, checks: Sequence[tuple[str, Check, bool]], *, timeout: float = 2.0) -> None:
        """`checks`: (name, check, required) — a required check that fails makes the
        process not ready."""
        self._checks = tuple(checks)
        self._timeout = timeout
        self.draining = False

    def start_draining(self) -> None:
        """From now on the process is not ready (it is stopping)."""
        self.draining = True

    async def readiness(self) -> Report:
        found = await asyncio.gather(*(self._run(n, c, r) for n, c, r in self._checks))
        if self.draining:
            return Report(False, "the server is stopping", tuple(found))
        required = {n for n, _, r in self._checks if r}
        for component in found:
            if component.name in required and component.status == DOWN:
                return Report(False, component.reason, tuple(found))
        return Report(True, None, tuple(found))

    async def _run(self, name: str, check: Check, required: bool) -> Component:
        try:
            component = await asyncio.wait_for(check(), self._timeout)
        except TimeoutError:
            failed = DOWN if required else DEGRADED
            return Component(name, failed, reason=f"{name} did not answer within {self._timeout} s")
        except Exception as exc:  # a check that fails says so; it never fails the answer
            failed = DOWN if required else DEGRADED
            return Component(name, failed, {"error": type(exc).__name__}, f"{name} failed")
        if not required and component.status == DOWN:
            return Component(name, DEGRADED, component.details, component.reason)
        return component


async def timed(work: Callable[[], Awaitable[object]]) -> float:
    """How long `work` took, in milliseconds (rounded to 0.01)."""
    start = time.perf_counter()
    await work()
    return round((time.perf_counter() - start) * 1000, 2)


class DesignWatch:
    """Whether the database still has every table and column the design uses.

    `missing()` lists what lacks (reflecting the database costs several queries: the answer
    is kept `interval` seconds while nothing lacks, and asked again at once when
    `refusals()` — statements the database refused for a missing table or column — has
    grown; while something lacks, every check asks again). The first time something
    lacks it logs an error asking for a migration or a restart; when it is back, that the
    server serves again.
    """

    def __init__(
        self,
        missing: Callable[[], Awaitable[Sequence[str]]],
        refusals: Callable[[], int],
        *,
        interval: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._missing, self._refusals = missing, refusals
        self._interval, self._clock = interval, clock
        self._seen: tuple[float, int, tuple[str, ...]] | None = None
        self._lock = asyncio.Lock()

    async def check(self) -> Component:
        lacking = await self.lacking()
        if not lacking:
            return Component("design", OK, {"applied": True})
        shown = ", ".join(lacking[:5]) + (", …" if len(lacking) > 5 else "")
        return Component("design", DOWN, {"applied": False, "missing": shown}, BEHIND)

    async def lacking(self) -> tuple[str, ...]:
        async with self._lock:
            now, refusals = self._clock(), self._refusals()
            seen = self._seen
            fresh = seen is not None and now - seen[0] < self._interval
            if seen is not None and fresh and refusals == seen[1] and not seen[2]:
                return seen[2]
            lacking = tuple(await self._missing())
            self._report(seen[2] if seen is not None else (), lacking)
            self._seen = (now, refusals, lacking)
            return lacking

    def _report(self, before: tuple[str, ...], now: tuple[str, ...]) -> None:
        if now and now != before:
            logger.error(
                "the database lacks what the design uses (%s): run `charpente migrate apply` "
                "(this server then resumes by itself), or restart it with the design the "
                "database has now",
                ", ".join(now[:5]),
            )
        elif before and not now:
            logger.warning("the database matches the design again: serving")
