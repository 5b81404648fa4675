"""Jobs on SQLite and PostgreSQL: queued in the write's transaction, run once, retried with
backoff, dead after their attempts, revived; timeouts, leases, validation."""

from __future__ import annotations

import asyncio
import datetime
from typing import Any

import pytest
from job_queues import MakeQueue, now

from charpente.errors import Conflict
from charpente.runtime.hooks import HookContext, Hooks
from charpente.runtime.jobs import JobContext
from charpente.sql.jobstore import LEASE_ENDED

pytestmark = pytest.mark.anyio

SECOND = datetime.timedelta(seconds=1)


def welcoming_hooks(calls: list[tuple[JobContext, dict[str, Any]]]) -> Hooks:
    """A before-hook that queues `welcome` for each new user, and the job recording calls."""
    hooks = Hooks()

    @hooks.before_create("users")
    async def queue_welcome(ctx: HookContext, values: dict[str, Any]) -> None:
        await ctx.enqueue("welcome", {"handle": values["handle"], "tags": ["new"]})
        if values["handle"] == "boom":
            raise RuntimeError("the hook fails after queueing")

    @hooks.job("welcome", retries=2, timeout=5)
    async def welcome(ctx: JobContext, args: dict[str, Any]) -> None:
        calls.append((ctx, args))

    return hooks


async def test_a_job_queued_by_a_before_hook_runs_once_with_its_args(make_queue: MakeQueue) -> None:
    calls: list[tuple[JobContext, dict[str, Any]]] = []
    queue = await make_queue(welcoming_hooks(calls))
    created = await queue.service.create("users", {"handle": "ada"})
    assert created.item is not None
    job = await queue.only_job()
    assert (job.name, job.state, job.attempts, job.max_attempts) == ("welcome", "queued", 0, 3)

    runner = queue.runner()
    assert await runner.run_due() == 1
    assert await runner.run_due() == 0
    [(ctx, args)] = calls
    assert args == {"handle": "ada", "tags": ["new"]}
    assert (ctx.id, ctx.name, ctx.attempt, ctx.max_attempts) == (job.id, "welcome", 1, 3)
    done = await queue.only_job()
    assert done.state == "done"
    assert done.finished_at is not None
    assert done.claimed_until is None


async def test_a_job_reads_records_and_queues_more_jobs(make_queue: MakeQueue) -> None:
    hooks = Hooks()
    seen: list[Any] = []

    @hooks.job("first")
    async def first(ctx: JobContext, args: dict[str, Any]) -> None:
        seen.append(await ctx.get("users", args["user"]))
        await ctx.enqueue("second", {"from": ctx.id}, delay=0)

    @hooks.job("second")
    async def second(ctx: JobContext, args: dict[str, Any]) -> None:
        seen.append(args)

    queue = await make_queue(hooks)
    created = await queue.service.create("users", {"handle": "ada"})
    assert created.item is not None
    user = created.item.record
    first_id = await queue.service.enqueue_job("first", {"user": user["id"]}, 0)
    runner = queue.runner()
    assert await runner.run_due() == 1
    assert await runner.run_due() == 1
    assert seen[0]["handle"] == "ada"
    assert seen[1] == {"from": first_id}


@pytest.mark.parametrize("handle", ["boom", "taken"])
async def test_a_write_that_rolls_back_leaves_no_job(make_queue: MakeQueue, handle: str) -> None:
    calls: list[Any] = []
    queue = await make_queue(welcoming_hooks(calls))
    await queue.service.create("users", {"handle": "taken"})
    with pytest.raises(RuntimeError if handle == "boom" else Conflict):
        await queue.service.create("users", {"handle": handle})
    assert len(await queue.all_jobs()) == 1  # the first user's only
    assert await queue.count_rows("users") == 1


async def test_an_after_hook_queues_once_the_write_committed(make_queue: MakeQueue) -> None:
    hooks = Hooks()
    ids: list[str] = []

    @hooks.after_create("users")
    async def later(ctx: HookContext, record: dict[str, Any]) -> None:
        ids.append(await ctx.enqueue("noop", {"id": record["id"]}, delay=3600))

    @hooks.job("noop")
    async def noop(ctx: JobContext, args: dict[str, Any]) -> None:
        return None

    queue = await make_queue(hooks)
    await queue.service.create("users", {"handle": "ada"})
    job = await queue.only_job()
    assert ids == [job.id]
    assert job.run_at - job.created_at == datetime.timedelta(hours=1)


async def test_a_delayed_job_waits_for_its_time(make_queue: MakeQueue) -> None:
    hooks = Hooks()
    ran: list[int] = []

    @hooks.job("later")
    async def later(ctx: JobContext, args: dict[str, Any]) -> None:
        ran.append(1)

    queue = await make_queue(hooks)
    start = now()
    await queue.service.enqueue_job("later", {}, 60)
    runner = queue.runner()
    assert await runner.run_due(start + 30 * SECOND) == 0
    assert await runner.run_due(start + 61 * SECOND) == 1
    assert ran == [1]


async def test_a_failing_job_retries_on_schedule_then_dies_and_retry_revives_it(
    make_queue: MakeQueue,
) -> None:
    hooks = Hooks()
    attempts: list[int] = []

    @hooks.job("flaky", retries=2)
    async def flaky(ctx: JobContext, args: dict[str, Any]) -> None:
        attempts.append(ctx.attempt)
        if len(attempts) <= 3:
            raise RuntimeError(f"boom {ctx.attempt}\nsecond line")

    queue = await make_queue(hooks)
    job_id = await queue.service.enqueue_job("flaky", {}, 0)
    runner = queue.runner(retry_delay=lambda n: 10.0 * n)  # 10 s, then 20 s
    start = now()

    assert await runner.run_due(start) == 1
    job = await queue.only_job()
    assert (job.state, job.attempts, job.last_error) == ("queued", 1, "RuntimeError: boom 1")
    assert 10 * SECOND <= job.run_at - start < 12 * SECOND
    assert await runner.run_due(start + 9 * SECOND) == 0

    assert await runner.run_due(start + 11 * SECOND) == 1
    job = await queue.only_job()
    assert (job.state, job.attempts) == ("queued", 2)
    assert 31 * SECOND <= job.run_at - start < 33 * SECOND

    assert await runner.run_due(start + 34 * SECOND) == 1
    dead = await queue.only_job()
    assert (dead.state, dead.attempts, dead.last_error) == ("dead", 3, "RuntimeError: boom 3")
    assert dead.finished_at is not None
    assert await runner.run_due(start + 3600 * SECOND) == 0  # dead stays dead

    assert await queue.store.retry(start, job_id) == 1
    revived = await queue.only_job()
    assert (revived.state, revived.attempts, revived.finished_at) == ("queued", 0, None)
    assert await runner.run_due(start + 35 * SECOND) == 1
    assert (await queue.only_job()).state == "done"
    assert attempts == [1, 2, 3, 1]


async def test_a_job_that_hangs_is_cut_at_its_timeout(make_queue: MakeQueue) -> None:
    hooks = Hooks()

    @hooks.job("hangs", retries=1, timeout=0.2)
    async def hangs(ctx: JobContext, args: dict[str, Any]) -> None:
        await asyncio.sleep(30)

    queue = await make_queue(hooks)
    await queue.service.enqueue_job("hangs", {}, 0)
    loop = asyncio.get_running_loop()
    began = loop.time()
    assert await queue.runner().run_due() == 1
    assert loop.time() - began < 5
    job = await queue.only_job()
    assert (job.state, job.last_error) == ("queued", "TimeoutError: timed out after 0.2 s")


async def test_a_job_s_own_timeout_error_is_an_ordinary_failure(make_queue: MakeQueue) -> None:
    hooks = Hooks()

    @hooks.job("calls_out", retries=0)
    async def calls_out(ctx: JobContext, args: dict[str, Any]) -> None:
        raise TimeoutError("the mail server did not answer")

    queue = await make_queue(hooks)
    await queue.service.enqueue_job("calls_out", {}, 0)
    await queue.runner().run_due()
    job = await queue.only_job()
    assert (job.state, job.last_error) == ("dead", "TimeoutError: the mail server did not answer")


async def test_a_worker_leaves_the_jobs_it_does_not_know_to_one_that_does(
    make_queue: MakeQueue,
) -> None:
    hooks = Hooks()
    ran: list[str] = []

    @hooks.job("new")
    async def new(ctx: JobContext, args: dict[str, Any]) -> None:
        ran.append(ctx.id)

    queue = await make_queue(hooks)
    job_id = await queue.service.enqueue_job("new", {}, 0)
    older = Hooks()  # a worker still running hooks from before the job existed

    @older.job("other")
    async def other(ctx: JobContext, args: dict[str, Any]) -> None:
        raise AssertionError("not this one")

    assert await (await make_queue(older)).runner().run_due() == 0
    assert await (await make_queue(Hooks())).runner().run_due() == 0
    assert (await queue.only_job()).state == "queued"
    assert await queue.runner().run_due() == 1
    assert ran == [job_id]


async def test_a_killed_runner_s_job_runs_again_once_its_lease_ends(make_queue: MakeQueue) -> None:
    hooks = Hooks()
    started: list[int] = []
    release = asyncio.Event()

    @hooks.job("slow", retries=3, timeout=10)
    async def slow(ctx: JobContext, args: dict[str, Any]) -> None:
        started.append(ctx.attempt)
        if ctx.attempt == 1:
            await release.wait()  # never set: the runner is killed meanwhile

    queue = await make_queue(hooks)
    await queue.service.enqueue_job("slow", {}, 0)
    runner = queue.runner(poll_interval=0.01)
    task = asyncio.create_task(runner.run(asyncio.Event()))
    while not started:
        await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    held = await queue.only_job()
    assert (held.state, held.attempts) == ("running", 1)
    assert held.claimed_until is not None

    other = queue.runner()
    assert await other.run_due() == 0  # the lease still holds
    assert await other.run_due(held.claimed_until + SECOND) == 1
    assert started == [1, 2]
    job = await queue.only_job()
    assert (job.state, job.attempts) == ("done", 2)


async def test_a_job_whose_lease_ends_on_its_last_attempt_is_dead(make_queue: MakeQueue) -> None:
    hooks = Hooks()

    @hooks.job("crashes", retries=0, timeout=1)
    async def crashes(ctx: JobContext, args: dict[str, Any]) -> None:
        return None

    queue = await make_queue(hooks)
    await queue.service.enqueue_job("crashes", {}, 0)
    start = now()
    claimed = await queue.store.claim_due(start, start + SECOND, "gone", 10, ["crashes"])
    assert [j.attempts for j in claimed] == [1]
    assert await queue.runner().run_due(start + 2 * SECOND) == 0
    job = await queue.only_job()
    assert (job.state, job.last_error) == ("dead", LEASE_ENDED)
    assert not await queue.store.finish(job.id, "gone", start)  # the claim is over


async def test_run_keeps_concurrency_jobs_running_until_stopped(make_queue: MakeQueue) -> None:
    hooks = Hooks()
    running, most, done = 0, 0, []

    @hooks.job("work")
    async def work(ctx: JobContext, args: dict[str, Any]) -> None:
        nonlocal running, most
        running += 1
        most = max(most, running)
        await asyncio.sleep(0.05)
        running -= 1
        done.append(args["n"])

    queue = await make_queue(hooks)
    for n in range(7):
        await queue.service.enqueue_job("work", {"n": n}, 0)
    stop = asyncio.Event()
    task = asyncio.create_task(queue.runner(concurrency=3, poll_interval=0.02).run(stop))
    async with asyncio.timeout(10):
        while len(done) < 7:
            await asyncio.sleep(0.02)
    stop.set()
    await asyncio.wait_for(task, 5)
    assert sorted(done) == list(range(7))
    assert most == 3
    assert {j.state for j in await queue.all_jobs()} == {"done"}


async def test_done_jobs_are_pruned_after_keep_done(make_queue: MakeQueue) -> None:
    hooks = Hooks()

    @hooks.job("noop")
    async def noop(ctx: JobContext, args: dict[str, Any]) -> None:
        return None

    queue = await make_queue(hooks)
    for _ in range(3):
        await queue.service.enqueue_job("noop", {}, 0)
    await queue.runner().run_due()
    assert await queue.store.prune(now() - 60 * SECOND, 100) == 0
    assert await queue.store.prune(now() + SECOND, 2) == 2
    assert len(await queue.all_jobs()) == 1


async def test_jobs_are_listed_newest_first_by_state_and_page(make_queue: MakeQueue) -> None:
    hooks = Hooks()

    @hooks.job("noop")
    async def noop(ctx: JobContext, args: dict[str, Any]) -> None:
        return None

    queue = await make_queue(hooks)
    ids = [await queue.service.enqueue_job("noop", {"n": n}, 0) for n in range(4)]
    later = await queue.service.enqueue_job("noop", {}, 3600)
    await queue.runner().run_due()
    assert [j.id for j in await queue.store.jobs("done", 2)] == [ids[3], ids[2]]
    assert [j.id for j in await queue.store.jobs("done", 10, after=ids[2])] == ids[1::-1]
    assert [j.id for j in await queue.store.jobs("queued", 10)] == [later]
    assert await queue.store.jobs(None, 10, after="not-an-id") == []
    assert await queue.store.job("not-an-id") is None
    assert await queue.store.retry(now(), "not-an-id") == 0
    found = await queue.store.job(ids[0])
    assert found is not None
    assert found.args == '{"n":0}'


async def test_a_hook_queueing_a_bad_job_fails_the_write(make_queue: MakeQueue) -> None:
    hooks = Hooks()

    @hooks.before_create("users")
    async def bad(ctx: HookContext, values: dict[str, Any]) -> None:
        await ctx.enqueue("nope", {})

    queue = await make_queue(hooks)
    with pytest.raises(ValueError, match="no job named 'nope' is registered"):
        await queue.service.create("users", {"handle": "ada"})
    assert await queue.count_rows("users") == 0
    assert await queue.all_jobs() == []


async def test_two_runners_on_postgres_run_each_job_once(make_pg_queue: MakeQueue) -> None:
    hooks = Hooks()
    runs: dict[int, int] = {}

    @hooks.job("count")
    async def count(ctx: JobContext, args: dict[str, Any]) -> None:
        await asyncio.sleep(0.005)
        runs[args["n"]] = runs.get(args["n"], 0) + 1

    queue = await make_pg_queue(hooks)
    for n in range(60):
        await queue.service.enqueue_job("count", {"n": n}, 0)
    # Two runners, each on its own engine and pool, as two worker processes would be.
    first = (await make_pg_queue(hooks)).runner(concurrency=4)
    second = (await make_pg_queue(hooks)).runner(concurrency=4)
    taken: list[int] = []

    async def drain(runner: Any) -> None:
        while ran := await runner.run_due():
            taken.append(ran)

    await asyncio.gather(drain(first), drain(second))
    assert runs == dict.fromkeys(range(60), 1)
    assert sum(taken) == 60
    assert {j.state for j in await queue.all_jobs()} == {"done"}


class _Outage:
    """The real store, whose database goes away for the first `claims` claims and `finishes`
    outcomes (what a restart of the database server looks like to a worker)."""

    def __init__(self, store: Any, claims: int = 0, finishes: int = 0) -> None:
        self.store, self.claims, self.finishes = store, claims, finishes

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)

    async def claim_due(self, *args: Any) -> Any:
        if self.claims:
            self.claims -= 1
            raise ConnectionError("connection refused")
        return await self.store.claim_due(*args)

    async def finish(self, *args: Any) -> bool:
        if self.finishes:
            self.finishes -= 1
            raise ConnectionError("connection refused")
        return bool(await self.store.finish(*args))


async def test_run_goes_on_when_the_database_comes_back(make_queue: MakeQueue) -> None:
    hooks = Hooks()
    ran: list[str] = []

    @hooks.job("work")
    async def work(ctx: JobContext, args: dict[str, Any]) -> None:
        ran.append(ctx.id)

    queue = await make_queue(hooks)
    job_id = await queue.service.enqueue_job("work", {}, 0)
    runner = queue.runner(poll_interval=0.01)
    runner.store = _Outage(queue.store, claims=2)
    stop = asyncio.Event()
    task = asyncio.create_task(runner.run(stop))
    async with asyncio.timeout(10):
        while not ran:
            await asyncio.sleep(0.01)
    stop.set()
    await asyncio.wait_for(task, 5)
    assert ran == [job_id]


async def test_an_outcome_that_cannot_be_recorded_means_the_job_runs_again(
    make_queue: MakeQueue,
) -> None:
    hooks = Hooks()
    ran: list[int] = []

    @hooks.job("work", timeout=1)
    async def work(ctx: JobContext, args: dict[str, Any]) -> None:
        ran.append(ctx.attempt)

    queue = await make_queue(hooks)
    await queue.service.enqueue_job("work", {}, 0)
    runner = queue.runner()
    runner.store = _Outage(queue.store, finishes=1)
    assert await runner.run_due() == 1
    assert (await queue.only_job()).state == "running"
    assert await runner.run_due(now() + runner.lease + SECOND) == 1
    assert ran == [1, 2]
    assert (await queue.only_job()).state == "done"


async def test_a_stopped_runner_lets_running_jobs_finish(make_queue: MakeQueue) -> None:
    hooks = Hooks()
    finished: list[str] = []
    started = asyncio.Event()

    @hooks.job("slow")
    async def slow(ctx: JobContext, args: dict[str, Any]) -> None:
        started.set()
        await asyncio.sleep(0.2)
        finished.append(ctx.id)

    queue = await make_queue(hooks)
    await queue.service.enqueue_job("slow", {}, 0)
    stop = asyncio.Event()
    task = asyncio.create_task(queue.runner(poll_interval=0.01).run(stop))
    await asyncio.wait_for(started.wait(), 5)
    stop.set()
    await asyncio.wait_for(task, 5)
    assert len(finished) == 1
    assert (await queue.only_job()).state == "done"
