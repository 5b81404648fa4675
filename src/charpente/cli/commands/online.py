"""Zero-downtime migrations in the CLI: the lock notes of `migrate plan`."""

from __future__ import annotations

from charpente.cli.commands.output import say
from charpente.wiring import MigrationPlan

__all__ = ["show_locks"]


def show_locks(plan: MigrationPlan) -> None:
    """Under the plan: each step that would lock a live table, and the form that runs."""
    noted = [(number, step) for number, step in enumerate(plan.steps, 1) if step.lock]
    if not noted:
        return
    say("on tables with rows (PostgreSQL):")
    for number, step in noted:
        say(f"  {number}. {step.lock}")
