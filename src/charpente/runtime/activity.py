"""What `charpente worker` says it does: one info line every few seconds at most, only
when something happened (events relayed, webhook attempts, jobs run), and a summary when
it stops."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, fields

__all__ = ["Activity", "ActivityLog", "describe"]

logger = logging.getLogger("charpente.worker")

EVERY = 5.0  # seconds between two activity lines, at most one per period


@dataclass(frozen=True, slots=True)
class Activity:
    """Counts since the process started (or, subtracted, over a period)."""

    relayed: int = 0
    sent: int = 0  # webhook attempts answered 2xx
    send_failed: int = 0  # webhook attempts that failed
    jobs_done: int = 0
    jobs_failed: int = 0

    def __sub__(self, other: Activity) -> Activity:
        return Activity(*(getattr(self, f.name) - getattr(other, f.name) for f in fields(self)))

    @property
    def is_idle(self) -> bool:
        return not any(getattr(self, f.name) for f in fields(self))


def describe(activity: Activity) -> str:
    """`relayed 12 events, 3 webhook deliveries (1 failed), 2 jobs (none failed)`."""
    attempts = activity.sent + activity.send_failed
    jobs = activity.jobs_done + activity.jobs_failed
    return (
        f"relayed {_count(activity.relayed, 'event')}, "
        f"{_count(attempts, 'webhook delivery', 'webhook deliveries')} "
        f"({_failed(activity.send_failed)}), "
        f"{_count(jobs, 'job')} ({_failed(activity.jobs_failed)})"
    )


class ActivityLog:
    """Logs the difference of `read()` every `every` seconds when it is not nothing."""

    def __init__(
        self,
        read: Callable[[], Activity],
        *,
        every: float = EVERY,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.read, self.every, self.clock = read, every, clock
        self._last = read()
        self._started = clock()

    def report(self) -> None:
        """One line for what happened since the last one (nothing when nothing did)."""
        now = self.read()
        happened = now - self._last
        self._last = now
        if not happened.is_idle:
            logger.info("worker: %s in the last %.0f s", describe(happened), self.every)

    def summary(self, waiting: int | None = None) -> str:
        """Everything since the start, and what is left (for the line at stop)."""
        uptime = self.clock() - self._started
        total = describe(self.read() - Activity())
        left = "" if waiting is None else f"; {_count(waiting, 'event')} waiting in the outbox"
        return f"worker stopped after {uptime:.0f} s: {total}{left}"

    def stopped(self, waiting: int | None = None) -> None:
        """Log the summary (the worker's last line)."""
        logger.info(self.summary(waiting))

    async def run(self, stop: asyncio.Event) -> None:
        """Report every `every` seconds until `stop` is set."""
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.every)
            self.report()


def _count(number: int, one: str, many: str | None = None) -> str:
    return f"{number} {one if number == 1 else (many or one + 's')}"


def _failed(number: int) -> str:
    return "none failed" if number == 0 else f"{number} failed"
