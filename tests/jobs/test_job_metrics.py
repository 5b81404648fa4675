"""Job attempts are counted by the state they end in: done, retry, dead."""

from __future__ import annotations

from typing import Any

import pytest
from job_queues import MakeQueue

from charpente.runtime import metrics
from charpente.runtime.hooks import HookContext, Hooks
from charpente.runtime.jobs import JobContext

pytestmark = pytest.mark.anyio


def value(state: str) -> float:
    return float(metrics.JOBS.labels(state)._value.get())


async def test_job_attempts_are_counted_by_the_state_they_end_in(make_queue: MakeQueue) -> None:
    hooks = Hooks()

    @hooks.before_create("users")
    async def queue(ctx: HookContext, values: dict[str, Any]) -> None:
        await ctx.enqueue("flaky" if values["handle"] == "ada" else "doomed", {})

    @hooks.job("flaky", retries=1)
    async def flaky(ctx: JobContext, args: dict[str, Any]) -> None:
        if ctx.attempt == 1:
            raise RuntimeError("once")

    @hooks.job("doomed", retries=0)
    async def doomed(ctx: JobContext, args: dict[str, Any]) -> None:
        raise RuntimeError("always")

    jobs = await make_queue(hooks)
    before = {state: value(state) for state in ("done", "retry", "dead")}
    await jobs.service.create("users", {"handle": "ada"})
    await jobs.service.create("users", {"handle": "bob"})
    runner = jobs.runner(retry_delay=lambda attempt: 0.0)
    assert await runner.run_due() == 2  # flaky fails once, doomed dies
    assert await runner.run_due() == 1  # flaky again: done
    added = {state: value(state) - count for state, count in before.items()}
    assert added == {"done": 1, "retry": 1, "dead": 1}
