"""A worker that stops hands the jobs it could not finish back to the queue, due at once
(rather than holding them until their lease ends)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from job_queues import MakeQueue

from charpente.runtime.hooks import Hooks
from charpente.runtime.jobs import JobContext

pytestmark = pytest.mark.anyio


async def test_jobs_cut_short_by_a_stopping_worker_are_released_and_run_again(
    make_queue: MakeQueue,
) -> None:
    hooks = Hooks()
    started: list[int] = []
    forever = asyncio.Event()

    @hooks.job("long", retries=3, timeout=60)
    async def long(ctx: JobContext, args: dict[str, Any]) -> None:
        started.append(ctx.attempt)
        if ctx.attempt == 1:
            await forever.wait()  # longer than the worker's grace

    queue = await make_queue(hooks)
    await queue.service.enqueue_job("long", {}, 0)
    stop = asyncio.Event()
    task = asyncio.create_task(queue.runner(poll_interval=0.01).run(stop))
    while not started:
        await asyncio.sleep(0.01)
    stop.set()  # the worker stops: it waits for the job, which does not end
    await asyncio.sleep(0.1)
    task.cancel()  # its grace is over
    with pytest.raises(asyncio.CancelledError):
        await task
    released = await queue.only_job()
    assert released.state == "queued"
    assert released.claimed_until is None or released.claimed_until <= released.run_at
    assert "worker stopped" in (released.last_error or "")

    assert await queue.runner().run_due() == 1  # due now: no lease to wait for
    assert started == [1, 2]
    assert (await queue.only_job()).state == "done"
