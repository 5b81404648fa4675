"""`charpente migrate plan|apply`: show and run what brings the database up to the design."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from charpente.cli.commands.config import design_and_settings, on_database
from charpente.cli.commands.design import DesignArgument, DesignOption, chosen_design
from charpente.cli.commands.online import register_online_commands, show_locks
from charpente.cli.commands.output import fail, reports_errors, say
from charpente.settings import redacted_url
from charpente.wiring import MigrationPlan, apply_database_migration, plan_database_migration

__all__ = ["migrate_app", "show_plan"]

UP_TO_DATE = "the database is up to date"

migrate_app = typer.Typer(
    name="migrate",
    help="Compare the database with the design, and bring it up to date.",
    no_args_is_help=True,
)


@migrate_app.command("plan")
@reports_errors
def plan(design: DesignArgument = None, design_option: DesignOption = None) -> None:
    """Show the steps that would bring the database up to the design (changes nothing)."""
    loaded, settings = design_and_settings(chosen_design(design, design_option))
    found = on_database(settings, plan_database_migration(settings, loaded))
    say(f"database: {redacted_url(settings.database_url)}")
    _show(found)


@migrate_app.command("apply")
@reports_errors
def apply(
    design: DesignArgument = None,
    design_option: DesignOption = None,
    allow_destructive: Annotated[
        bool,
        typer.Option(
            "--allow-destructive", help="Also run steps that drop data (columns, tables)."
        ),
    ] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
) -> None:
    """Show the plan, then run it in one go (refuses steps that drop data unless allowed)."""
    loaded, settings = design_and_settings(chosen_design(design, design_option))
    found = on_database(settings, plan_database_migration(settings, loaded))
    say(f"database: {redacted_url(settings.database_url)}")
    _show(found)
    if found.is_empty:
        return
    if found.has_destructive and not allow_destructive:
        raise fail("this plan drops data: back up, then re-run with --allow-destructive")
    if not yes:
        typer.confirm(f"Apply {_steps(len(found.steps))}?", abort=True, err=True)
    with Console(stderr=True).status(f"applying {_steps(len(found.steps))}…"):
        applied = on_database(
            settings,
            apply_database_migration(settings, loaded, allow_destructive=allow_destructive),
        )
    say(f"applied {_steps(len(applied.steps))}: {UP_TO_DATE}")


def _show(plan: MigrationPlan) -> None:
    if plan.is_empty:
        say(UP_TO_DATE)
        return
    table = Table(title="migration plan", title_justify="left")
    table.add_column("#", justify="right")
    table.add_column("step")
    table.add_column("safety")
    table.add_column("breaking")
    for number, step in enumerate(plan.steps, 1):
        safety = str(step.safety)
        style = "green" if safety == "safe" else ("red" if safety == "drops data" else "yellow")
        breaking = Text("yes", style="red") if step.breaking else Text("no")
        table.add_row(str(number), Text(step.description), Text(safety, style=style), breaking)
    Console(soft_wrap=False).print(table)
    show_locks(plan)


def _steps(count: int) -> str:
    return f"{count} step{'s' if count != 1 else ''}"


def show_plan(plan: MigrationPlan) -> None:
    """Print a migration plan as `charpente migrate plan` does."""
    _show(plan)


register_online_commands(migrate_app)  # start, complete: zero-downtime migrations
