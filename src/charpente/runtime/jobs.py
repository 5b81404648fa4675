"""Jobs: work that hooks queue and the worker runs, with retries, backoff and a dead state.

`checked_job` is what the service calls before a job is queued (the name must be
registered, the arguments a JSON object of at most 64 KiB, the delay at most 30 days).
`JobRunner` claims due jobs with a lease, runs each under its timeout, at most
`concurrency` at a time, and records the outcome: done, queued again after a backoff, or
dead once its attempts are spent. A job whose worker dies runs again when its lease ends,
so a job may run more than once: job functions must be idempotent.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import math
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import msgspec

from charpente.compile.plan import Record
from charpente.runtime import metrics, tracing
from charpente.runtime.hooks import Enqueue, Hooks, JobFunction, RecordReader
from charpente.runtime.ids import new_id
from charpente.runtime.ports import Clock, Job, JobStore, NewJob
from charpente.runtime.resilience import Backoff

__all__ = [
    "MAX_ARGS_BYTES",
    "MAX_DELAY",
    "JobContext",
    "JobRunner",
    "JobService",
    "RunnerOptions",
    "checked_job",
    "error_summary",
    "retry_delay",
]

logger = logging.getLogger("charpente.jobs")

MAX_ARGS_BYTES = 64 * 1024
MAX_DELAY = 30 * 24 * 3600.0  # seconds: 30 days
RETRY_BASE = 10.0  # seconds before the first retry (at most; see retry_delay)
RETRY_CAP = 3600.0  # seconds: no wait between attempts is longer than an hour
LEASE_GRACE = 30.0  # seconds a lease lasts beyond the longest timeout
MAX_ERROR = 500  # characters of an error kept with the job
PRUNE_EVERY = 3600.0  # seconds between prunings of done jobs
PRUNE_BATCH = 1000
CLAIM_RETRY_BASE, CLAIM_RETRY_CAP = 1.0, 30.0  # seconds between claims while the store fails

_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder(dict[str, Any]).decode


class JobService(Protocol):
    """What jobs use of the service: its hooks and clock, record reads as hooks see them,
    and queueing more jobs (each in a transaction of its own)."""

    @property
    def hooks(self) -> Hooks: ...

    @property
    def clock(self) -> Clock: ...

    async def read_record(self, resource: str, id: str) -> Record | None: ...

    async def enqueue_job(self, job: str, args: Mapping[str, Any], delay: float) -> str: ...


@dataclass(frozen=True, slots=True)
class JobContext:
    """What a job knows: its id and name, which attempt this is (from 1) out of how many,
    and ways to read records and to queue more jobs."""

    id: str
    name: str
    attempt: int
    max_attempts: int
    reader: RecordReader = field(repr=False)
    enqueuer: Enqueue = field(repr=False)

    async def get(self, resource: str, id: str) -> Record | None:
        """The record `id` of `resource` as it is now, or None."""
        return await self.reader(resource, id)

    async def enqueue(
        self, job: str, args: Mapping[str, Any] | None = None, *, delay: float = 0
    ) -> str:
        """Queue another job (on its own, at once); its id."""
        return await self.enqueuer(job, args or {}, delay)


@dataclass(frozen=True, slots=True)
class RunnerOptions:
    """How a JobRunner works: jobs run at once, seconds between looks at an empty queue,
    seconds done jobs are kept, and the wait after failed attempt n (`retry_delay` when None)."""

    concurrency: int = 4
    poll_interval: float = 1.0
    keep_done: float = 7 * 24 * 3600.0
    retry_delay: Callable[[int], float] | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if not 1 <= self.concurrency <= 1000:
            raise ValueError("concurrency must be between 1 and 1000")
        if not self.poll_interval > 0 or not self.keep_done >= 0:
            raise ValueError("poll_interval must be over 0, keep_done at least 0")


def checked_job(
    hooks: Hooks, job: object, args: object, delay: object, now: datetime.datetime
) -> NewJob:
    """The job to queue, or ValueError saying what is wrong: `job` is not registered, `args`
    is not a JSON object msgspec can encode or is over 64 KiB encoded, or `delay` is not a
    number of seconds between 0 and 30 days."""
    registered = hooks.jobs.get(job) if isinstance(job, str) else None
    if registered is None:
        known = ", ".join(sorted(hooks.jobs)) or "none"
        raise ValueError(f"no job named {job!r} is registered with @hooks.job (jobs: {known})")
    if isinstance(delay, bool) or not isinstance(delay, int | float) or not math.isfinite(delay):
        raise ValueError(f"job {job!r}: delay must be a number of seconds")
    if not 0 <= delay <= MAX_DELAY:
        raise ValueError(f"job {job!r}: delay must be between 0 and {MAX_DELAY:.0f} s (30 days)")
    text = _encoded_args(job, args)
    run_at = now + datetime.timedelta(seconds=float(delay))
    traced = tracing.current_traceparent()  # the job continues the request's trace
    return NewJob(registered.name, text, registered.max_attempts, run_at, now, traced)


def retry_delay(attempt: int, draw: Callable[[], float] = random.random) -> float:
    """Seconds to wait after failed attempt `attempt` (from 1): 10 s * 2^(attempt-1), at
    most an hour, of which the second half is drawn at random (so retries spread out)."""
    step = Backoff(RETRY_BASE, RETRY_CAP, max(attempt - 1, 0), random=lambda: 0.5 + draw() / 2)
    return step.next()


def error_summary(exc: BaseException) -> str:
    """`Type: first line of the message`, at most 500 characters (what a job keeps)."""
    lines = str(exc).strip().splitlines()
    text = f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__
    return text[:MAX_ERROR]


@dataclass(frozen=True, slots=True)
class _Claim:
    """A batch taken together: its token, and when (wall clock and monotonic)."""

    token: str
    at: datetime.datetime
    started: float

    def now(self) -> datetime.datetime:
        """The claim's time plus what has elapsed since."""
        return self.at + datetime.timedelta(seconds=time.monotonic() - self.started)


class JobRunner:
    """Runs due jobs: `run_due(now)` once (claim a batch, run it, record outcomes), or
    `run(stop)` until stopped, keeping up to `concurrency` jobs running."""

    def __init__(
        self, service: JobService, store: JobStore, options: RunnerOptions | None = None
    ) -> None:
        self.service, self.store = service, store
        self.options = options or RunnerOptions()
        self._retry_delay = self.options.retry_delay or retry_delay
        self._next_prune = 0.0
        self.done, self.failed = 0, 0  # attempts run by this process: succeeded, or raised

    @property
    def lease(self) -> datetime.timedelta:
        """How long a claim holds a job: the longest timeout registered, and a margin."""
        timeouts = [j.timeout for j in self.service.hooks.jobs.values()]
        return datetime.timedelta(seconds=max(timeouts, default=60.0) + LEASE_GRACE)

    async def run_due(self, now: datetime.datetime | None = None) -> int:
        """Claim up to `concurrency` jobs due by `now`, run them and record their outcomes;
        how many ran. Raises when the store cannot be reached."""
        jobs, claim = await self._claim(now or self.service.clock.now(), self.options.concurrency)
        await asyncio.gather(*(self._execute(job, claim) for job in jobs))
        return len(jobs)

    async def run(self, stop: asyncio.Event) -> None:
        """Run jobs until `stop` is set, then wait for those running; never raises for a
        job's or the database's failure."""
        running: set[asyncio.Task[None]] = set()
        try:
            await self._loop(stop, running)
            if running:
                await asyncio.wait(set(running))
        except asyncio.CancelledError:
            for task in running:
                task.cancel()  # their jobs run again once their lease ends
            if running:
                await asyncio.wait(set(running))
            raise

    async def _loop(self, stop: asyncio.Event, running: set[asyncio.Task[None]]) -> None:
        backoff = Backoff(CLAIM_RETRY_BASE, CLAIM_RETRY_CAP)
        while not stop.is_set():
            free = self.options.concurrency - len(running)
            if free > 0:
                try:
                    jobs, claim = await self._claim(self.service.clock.now(), free)
                    await self._prune(claim.at)
                except Exception as exc:  # the database is away, most likely: keep trying
                    delay = backoff.next()
                    summary = error_summary(exc)
                    logger.warning("the job queue cannot be reached (%s); retrying", summary)
                    await _wait_for(stop, set(), delay)
                    continue
                backoff.reset()
                for job in jobs:
                    task = asyncio.create_task(self._execute(job, claim), name=f"job-{job.id}")
                    running.add(task)
                    task.add_done_callback(running.discard)
            full = len(running) >= self.options.concurrency
            # Full: wait for a slot. Otherwise the queue has nothing due: look again later.
            await _wait_for(stop, set(running) if full else set(), self.options.poll_interval)

    async def _claim(self, now: datetime.datetime, limit: int) -> tuple[list[Job], _Claim]:
        claim = _Claim(new_id(), now, time.monotonic())
        names = sorted(self.service.hooks.jobs)  # jobs this worker cannot run wait for one that can
        if not names:  # no hooks module, or one without jobs: nothing to ask the database
            return [], claim
        jobs = await self.store.claim_due(now, now + self.lease, claim.token, limit, names)
        return jobs, claim

    async def _prune(self, now: datetime.datetime) -> None:
        if time.monotonic() < self._next_prune:
            return
        self._next_prune = time.monotonic() + PRUNE_EVERY
        before = now - datetime.timedelta(seconds=self.options.keep_done)
        pruned = await self.store.prune(before, PRUNE_BATCH)
        if pruned:
            logger.info("removed %d done jobs finished before %s", pruned, before.isoformat())

    async def _execute(self, job: Job, claim: _Claim) -> None:
        """Run one claimed job and record its outcome; raises only when cancelled."""
        registered = self.service.hooks.jobs.get(job.name)
        context = JobContext(
            job.id,
            job.name,
            job.attempts,
            job.max_attempts,
            self.service.read_record,
            self.service.enqueue_job,
        )
        try:
            if job.traceparent is None or not tracing.enabled():
                await _attempt(registered, job, context)
            else:
                with tracing.continued(f"job {job.name}", job.traceparent):
                    await _attempt(registered, job, context)
        except Exception as exc:
            self.failed += 1
            await self._failed(job, claim, exc)
        else:
            self.done += 1
            await self._settle(job, self.store.finish(job.id, claim.token, claim.now()))
            metrics.JOBS.labels("done").inc()
            logger.debug("job %s %s done (attempt %d)", job.name, job.id, job.attempts)

    async def _failed(self, job: Job, claim: _Claim, exc: Exception) -> None:
        error = error_summary(exc)
        now = claim.now()
        trace = None if isinstance(exc, TimeoutError | LookupError) else exc
        if job.attempts >= job.max_attempts:
            logger.error(
                "job %s %s is dead (attempt %d of %d failed): %s",
                job.name,
                job.id,
                job.attempts,
                job.max_attempts,
                error,
                exc_info=trace,
            )
            await self._settle(job, self.store.fail(job.id, claim.token, error, now, None))
            metrics.JOBS.labels("dead").inc()
            return
        wait = self._retry_delay(job.attempts)
        logger.warning(
            "job %s %s failed (attempt %d of %d), retrying in %.0f s: %s",
            job.name,
            job.id,
            job.attempts,
            job.max_attempts,
            wait,
            error,
            exc_info=trace,
        )
        retry_at = now + datetime.timedelta(seconds=wait)
        await self._settle(job, self.store.fail(job.id, claim.token, error, now, retry_at))
        metrics.JOBS.labels("retry").inc()

    async def _settle(self, job: Job, outcome: Awaitable[bool]) -> None:
        """Record an outcome; when it cannot be, the job runs again after its lease."""
        try:
            held = await outcome
        except Exception as exc:
            logger.warning(
                "the outcome of job %s %s cannot be recorded (%s): it will run again",
                job.name,
                job.id,
                error_summary(exc),
            )
            return
        if not held:
            logger.warning(
                "job %s %s outlived its lease: another worker may have run it again",
                job.name,
                job.id,
            )


async def _attempt(registered: JobFunction | None, job: Job, context: JobContext) -> None:
    if registered is None:
        raise LookupError(f"no job named {job.name!r} is registered in this worker's hooks")
    args = _decode(job.args)
    scope = asyncio.timeout(registered.timeout)
    try:
        async with scope:
            await registered.function(context, args)
    except TimeoutError:
        if scope.expired():  # ours, not a TimeoutError of the job's own code
            raise TimeoutError(f"timed out after {registered.timeout:g} s") from None
        raise


async def _wait_for(stop: asyncio.Event, tasks: set[asyncio.Task[None]], delay: float) -> None:
    """Until `stop` is set, one of `tasks` ends, or `delay` seconds pass."""
    stopping = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({stopping, *tasks}, timeout=delay, return_when="FIRST_COMPLETED")
    finally:
        stopping.cancel()


def _encoded_args(job: object, args: object) -> str:
    if not isinstance(args, Mapping):
        raise ValueError(f"job {job!r}: args must be a JSON object (a dict), not {_kind(args)}")
    bad = next((k for k in args if not isinstance(k, str)), None)
    if bad is not None:
        raise ValueError(f"job {job!r}: args keys must be strings, not {_kind(bad)}")
    try:
        encoded = _encode(args)
    except (TypeError, ValueError, OverflowError) as exc:
        raise ValueError(f"job {job!r}: args cannot be encoded as JSON: {exc}") from None
    if len(encoded) > MAX_ARGS_BYTES:
        raise ValueError(
            f"job {job!r}: args are {len(encoded)} bytes of JSON, over the limit of "
            f"{MAX_ARGS_BYTES} (pass ids and read the records in the job)"
        )
    return encoded.decode("utf-8")


def _kind(value: object) -> str:
    return type(value).__name__
