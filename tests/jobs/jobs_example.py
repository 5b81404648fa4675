"""Jobs for the shop design: every new user gets a welcome message, sent by the worker."""

from __future__ import annotations

from typing import Any

from charpente.runtime.hooks import HookContext, Hooks
from charpente.runtime.jobs import JobContext

hooks = Hooks()

# What was sent, by job id (a real module calls a mail API, with ctx.id as its idempotency key).
sent: dict[str, str] = {}


@hooks.before_create("users")
async def queue_welcome(ctx: HookContext, values: dict[str, Any]) -> None:
    """Queued in the write's transaction: a user is never created without its job."""
    await ctx.enqueue("send_welcome", {"handle": values["handle"]})


@hooks.after_update("users")
async def queue_farewell(ctx: HookContext, record: dict[str, Any]) -> None:
    """After the commit, a job of its own: say goodbye a day after a user leaves."""
    if record["handle"].startswith("gone-"):
        await ctx.enqueue("send_farewell", {"user": record["id"]}, delay=86400)


@hooks.job("send_welcome", retries=5, timeout=60)
async def send_welcome(ctx: JobContext, args: dict[str, Any]) -> None:
    """May run more than once (a worker can die after sending): send once per job id."""
    if ctx.id in sent:
        return
    sent[ctx.id] = f"welcome, {args['handle']}"


@hooks.job("send_farewell", retries=2, timeout=30)
async def send_farewell(ctx: JobContext, args: dict[str, Any]) -> None:
    """Reads the user as it is when the job runs: it may have changed, or be gone."""
    user = await ctx.get("users", args["user"])
    if user is None or ctx.id in sent:
        return
    sent[ctx.id] = f"farewell, {user['handle']}"
