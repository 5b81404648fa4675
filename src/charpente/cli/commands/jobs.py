"""`charpente jobs …`: the jobs hooks queued, straight on the database (no server needed;
the database must be migrated): list them, and queue dead ones again."""

from __future__ import annotations

import datetime
import enum
from collections.abc import Awaitable, Callable
from typing import Annotated, TypeVar

import typer

from charpente.cli.commands.config import design_and_settings, on_database
from charpente.cli.commands.design import DesignOption
from charpente.cli.commands.output import fail, reports_errors, say
from charpente.design.model import Design
from charpente.errors import CharpenteError
from charpente.runtime.ports import Job, JobStore
from charpente.settings import Settings
from charpente.wiring import open_job_store

__all__ = ["jobs_app", "run_on_jobs"]

T = TypeVar("T")

jobs_app = typer.Typer(
    name="jobs",
    help="Jobs queued by hooks: list them, retry dead ones (no server needed).",
    no_args_is_help=True,
)


class State(enum.StrEnum):
    """The states a job goes through."""

    queued = "queued"
    running = "running"
    done = "done"
    dead = "dead"


def run_on_jobs(design: Design, settings: Settings, work: Callable[[JobStore], Awaitable[T]]) -> T:
    """Run `work` on the configured database's job queue."""

    async def run() -> T:
        async with open_job_store(settings, design) as store:
            return await work(store)

    return on_database(settings, run())


@jobs_app.command("list")
@reports_errors
def list_jobs(
    state: Annotated[State | None, typer.Option(help="Only the jobs in this state.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000, help="How many jobs, newest first.")] = 50,
    design: DesignOption = None,
) -> None:
    """Show jobs, newest first: id, state, name, attempts, when, last error."""
    loaded, settings = design_and_settings(design)
    wanted = None if state is None else state.value
    jobs = run_on_jobs(loaded, settings, lambda store: store.jobs(wanted, limit))
    if not jobs:
        say("no jobs" if wanted is None else f"no {wanted} jobs")
        return
    for job in jobs:
        say(_line(job))


@jobs_app.command("retry")
@reports_errors
def retry(
    job_id: Annotated[
        str | None, typer.Argument(metavar="[ID]", help="The dead job to run again.")
    ] = None,
    dead: Annotated[bool, typer.Option("--dead", help="Run every dead job again.")] = False,
    design: DesignOption = None,
) -> None:
    """Queue a dead job again (or every one, with --dead): due now, attempts counted anew."""
    if (job_id is None) == (not dead):
        raise fail("give one job id, or --dead for every dead job", code=2)
    loaded, settings = design_and_settings(design)
    now = datetime.datetime.now(datetime.UTC)
    if job_id is None:
        count = run_on_jobs(loaded, settings, lambda store: store.retry(now))
        say(f"{count} dead job{'' if count == 1 else 's'} queued again")
        return

    async def one(store: JobStore) -> None:
        if await store.retry(now, job_id):
            return
        found = await store.job(job_id)
        if found is None:
            raise CharpenteError(f"no job with id {job_id}")
        raise CharpenteError(f"job {found.id} is {found.state}, not dead: it cannot be retried")

    run_on_jobs(loaded, settings, one)
    say(f"job {job_id} queued again")


def _line(job: Job) -> str:
    """`id  state  name  attempts/max  when  last error`: when it is due, or when it ended."""
    ended = job.finished_at if job.state in ("done", "dead") else None
    when = (ended or job.run_at).strftime("%Y-%m-%d %H:%M:%SZ")
    attempts = f"{job.attempts}/{job.max_attempts}"
    error = job.last_error or "-"
    return f"{job.id}  {job.state:<7}  {job.name}  {attempts}  {when}  {error}"
