"""A job queued by a hook continues the trace of the request that queued it."""

from __future__ import annotations

from typing import Any

import pytest
from job_queues import MakeQueue
from tests.traces import by_name, recorded

from charpente.runtime import tracing
from charpente.runtime.hooks import HookContext, Hooks
from charpente.runtime.jobs import JobContext

pytestmark = pytest.mark.anyio


async def test_a_job_runs_in_the_trace_of_the_request_that_queued_it(
    make_queue: MakeQueue,
) -> None:
    hooks = Hooks()
    ran: list[str] = []

    @hooks.before_create("users")
    async def queue_welcome(ctx: HookContext, values: dict[str, Any]) -> None:
        await ctx.enqueue("welcome", {"handle": values["handle"]})

    @hooks.job("welcome")
    async def welcome(ctx: JobContext, args: dict[str, Any]) -> None:
        ran.append(args["handle"])

    queue = await make_queue(hooks)
    with recorded() as spans:
        with tracing.tracer.start_as_current_span("POST /v1/users") as request:
            await queue.service.create("users", {"handle": "ada"})
        queued = await queue.only_job()
        assert queued.traceparent is not None
        assert await queue.runner().run_due() == 1  # later, in the worker: no current span
        (job,) = by_name(spans.get_finished_spans(), "job welcome")
    assert ran == ["ada"]
    assert job.context.trace_id == request.get_span_context().trace_id
    assert job.parent is not None
    assert job.parent.span_id == request.get_span_context().span_id


async def test_without_tracing_a_job_keeps_no_trace(make_queue: MakeQueue) -> None:
    hooks = Hooks()

    @hooks.before_create("users")
    async def queue_welcome(ctx: HookContext, values: dict[str, Any]) -> None:
        await ctx.enqueue("welcome", {})

    @hooks.job("welcome")
    async def welcome(ctx: JobContext, args: dict[str, Any]) -> None:
        return None

    queue = await make_queue(hooks)
    await queue.service.create("users", {"handle": "bob"})
    assert (await queue.only_job()).traceparent is None
