"""`charpente webhooks …`: the webhook endpoints, their deliveries, and replaying the dead
ones, straight on the database (no server needed; the database must be migrated).

Secrets are never printed here: a run-time endpoint's secret is shown once, by the API that
creates it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from charpente.cli.commands.config import design_and_settings, on_database
from charpente.cli.commands.design import DesignOption
from charpente.cli.commands.output import fail, reports_errors, say
from charpente.errors import ApiError, CharpenteError
from charpente.runtime.caller import SYSTEM
from charpente.runtime.webhook_requests import MAX_PAGE, STATES
from charpente.runtime.webhooks import Webhooks
from charpente.wiring import open_webhooks

__all__ = ["webhooks_app"]

T = TypeVar("T")

webhooks_app = typer.Typer(
    name="webhooks",
    help="List webhook endpoints and deliveries; replay dead deliveries (no server needed).",
    no_args_is_help=True,
)

WebhookOption = Annotated[
    str | None, typer.Option("--webhook", help="Only this endpoint (its name).", show_default=False)
]


@webhooks_app.command("list")
@reports_errors
def list_webhooks(design: DesignOption = None) -> None:
    """Every endpoint: the design's, then those added through the API."""
    endpoints = _run(design, lambda webhooks: webhooks.list_endpoints(SYSTEM))
    if not endpoints:
        say("no webhook: declare one under `webhooks:` in the design, or POST /v1/webhooks")
        return
    rows = [("name", "source", "enabled", "events", "url")]
    for found in endpoints:
        enabled = "yes" if found["enabled"] else "no"
        events = ",".join(found["events"])
        rows.append((found["name"], found["source"], enabled, events, found["url"]))
    _table(rows)


@webhooks_app.command("deliveries")
@reports_errors
def deliveries(
    webhook: WebhookOption = None,
    state: Annotated[
        str | None,
        typer.Option(help=f"Only in this state: {', '.join(STATES)}.", show_default=False),
    ] = None,
    limit: Annotated[int, typer.Option(min=1, max=MAX_PAGE, help="How many, newest first.")] = 50,
    design: DesignOption = None,
) -> None:
    """The newest deliveries: when, to which endpoint, their state, attempts and last error."""
    if state is not None and state not in STATES:
        raise fail(f"--state is one of {', '.join(STATES)}", code=2)

    async def work(webhooks: Webhooks) -> list[dict[str, Any]]:
        found, _ = await webhooks.list_deliveries(SYSTEM, webhook, state=state, limit=limit)
        return found

    found = _run(design, work)
    if not found:
        say("no delivery" + (f" is {state}" if state else " yet"))
        return
    rows = [("created", "id", "webhook", "type", "state", "attempts", "status", "last error")]
    for item in found:
        status = "-" if item["last_status"] is None else str(item["last_status"])
        rows.append(
            (
                item["created_at"],
                item["id"],
                item["webhook"],
                item["type"],
                item["state"],
                str(item["attempts"]),
                status,
                item["last_error"] or "-",
            )
        )
    _table(rows)


@webhooks_app.command("replay")
@reports_errors
def replay(
    webhook: WebhookOption = None,
    delivery: Annotated[
        str | None,
        typer.Option("--delivery", help="Only this delivery (its id).", show_default=False),
    ] = None,
    design: DesignOption = None,
) -> None:
    """Send dead deliveries again: all, one endpoint's, or one (from the first attempt).

    A running worker picks them up at once.
    """
    count = _run(design, lambda webhooks: webhooks.replay(webhook, delivery))
    if count == 0:
        raise fail("no dead delivery matches: nothing to replay")
    say(f"replaying {count} dead deliver{'ies' if count != 1 else 'y'}")


def _run(design: Path | None, work: Callable[[Webhooks], Awaitable[T]]) -> T:
    loaded, settings = design_and_settings(design)

    async def run() -> T:
        try:
            async with open_webhooks(settings, loaded) as webhooks:
                return await work(webhooks)
        except ApiError as error:
            raise CharpenteError(error.detail or error.title) from None

    return on_database(settings, run())


def _table(rows: Sequence[Sequence[str]]) -> None:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        say("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
