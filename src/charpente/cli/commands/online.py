"""Zero-downtime migrations in the CLI: `migrate start`, `migrate complete`, and the lock
notes under `migrate plan`."""

from __future__ import annotations

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn

from charpente.cli.commands.config import design_and_settings, on_database
from charpente.cli.commands.design import DesignOption
from charpente.cli.commands.output import reports_errors, say
from charpente.settings import redacted_url
from charpente.wiring import MigrationPlan, complete_database_migration, start_database_migration

__all__ = ["register_online_commands", "show_locks"]


def show_locks(plan: MigrationPlan) -> None:
    """Under the plan: each step that would lock a live table, and the form that runs."""
    noted = [(number, step) for number, step in enumerate(plan.steps, 1) if step.lock]
    if not noted:
        return
    say("on tables with rows (PostgreSQL):")
    for number, step in noted:
        say(f"  {number}. {step.lock}")


def register_online_commands(app: typer.Typer) -> None:
    app.command("start")(start)
    app.command("complete")(complete)


@reports_errors
def start(design: DesignOption = None) -> None:
    """Expand: add the renamed columns, keep old and new in step, copy the rows (PostgreSQL).

    Processes of the old and of the new design can then run side by side. Run it again after
    an interruption: it goes on where it stopped.
    """
    loaded, settings = design_and_settings(design)
    say(f"database: {redacted_url(settings.database_url)}")
    with Progress(
        TextColumn("backfill {task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        console=Console(stderr=True),
    ) as bar:
        tasks: dict[str, TaskID] = {}

        def progress(column: str, done: int, total: int) -> None:
            if column not in tasks:
                tasks[column] = bar.add_task(column, total=total)
            bar.update(tasks[column], completed=done, total=total)

        started = on_database(settings, start_database_migration(settings, loaded, progress))
    for rename in started.renames:
        say(f"{rename.table}.{rename.old} -> {rename.table}.{rename.new}: both kept in step")
    say(
        "started: processes of the old and of the new design can run side by side; once every "
        "process runs the new design, run `charpente migrate complete`"
    )


@reports_errors
def complete(design: DesignOption = None) -> None:
    """Contract: drop the old columns and the triggers (refused while an old process runs)."""
    loaded, settings = design_and_settings(design)
    say(f"database: {redacted_url(settings.database_url)}")
    renames = on_database(settings, complete_database_migration(settings, loaded))
    for rename in renames:
        say(f"dropped {rename.table}.{rename.old}: {rename.table}.{rename.new} takes over")
    say("completed: the database matches the design")
