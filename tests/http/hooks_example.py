"""Hooks for the blog design: server-side rules a design cannot say on its own."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse

from charpente.errors import Conflict, FieldError, Forbidden, ValidationFailed
from charpente.runtime.hooks import HookContext, Hooks, RouteContext

hooks = Hooks()

welcomed: list[str] = []  # handles greeted after sign-up (a real module would send an email)


@hooks.before_create("posts")
async def tidy_title(ctx: HookContext, values: dict[str, Any]) -> dict[str, Any]:
    """Collapse runs of spaces in titles, and refuse obvious spam."""
    title = " ".join(str(values["title"]).split())
    if title.lower() == "buy now":
        error = FieldError("title", "spam", "looks like spam")
        raise ValidationFailed(detail="the post looks like spam", errors=[error])
    return {**values, "title": title}


@hooks.before_update("posts")
async def keep_locked_posts(
    ctx: HookContext, current: dict[str, Any], changes: dict[str, Any]
) -> None:
    """A post whose title starts with [locked] can no longer change."""
    if str(current["title"]).startswith("[locked]"):
        raise Forbidden(detail="this post is locked")


@hooks.before_delete("users")
async def keep_the_admin(ctx: HookContext, current: dict[str, Any]) -> None:
    if current["handle"] == "admin":
        raise Conflict(detail="the admin account cannot be deleted")


@hooks.before_create("likes")
async def no_self_likes(ctx: HookContext, values: dict[str, Any]) -> None:
    """Read another record inside the same transaction with ctx.get."""
    post = await ctx.get("posts", str(values["post"]))
    if post is not None and post["author"] == values["user"]:
        raise Forbidden(detail="liking your own post is not allowed")


@hooks.after_create("users")
def welcome(ctx: HookContext, record: dict[str, Any]) -> None:
    """Runs once the new user is committed; a plain function works too."""
    welcomed.append(str(record["handle"]))


@hooks.route("/v1/stats", methods=["GET"])
async def stats(request: Request) -> JSONResponse:
    """A custom endpoint beside the generated ones, using the same service."""
    service = request.app.state.service
    page = await service.list("posts", [("count", "exact"), ("limit", "1")])
    return JSONResponse({"posts": page.total})


@hooks.route("/v1/me", methods=["GET"])
async def me(request: Request, ctx: RouteContext) -> JSONResponse:
    """Declared with `ctx`: the caller the token names, and the service acting as them."""
    page = await ctx.list("posts", [("limit", "100")])  # what this caller may read
    return JSONResponse({"id": ctx.caller.id, "role": ctx.caller.role, "posts": len(page.data)})
