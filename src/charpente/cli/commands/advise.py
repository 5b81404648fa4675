"""`charpente advise`: the indexes that would serve the costliest shapes of the shape log.

Nothing changes without `--apply`, which adds the suggested indexes to the design file and
shows the migration plan (`charpente migrate apply` then builds them).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import Progress

from charpente.cli.commands.config import design_and_settings, on_database
from charpente.cli.commands.design import DesignOption
from charpente.cli.commands.design_patch import add_indexes
from charpente.cli.commands.migrate import show_plan
from charpente.cli.commands.output import fail, reports_errors, say
from charpente.design.model import Design
from charpente.loader import load_design_text
from charpente.runtime.advice import Advice, AdviceOptions, advise, verify_advice
from charpente.runtime.shapes import MAX_REPORTED
from charpente.wiring import open_index_planner, plan_database_migration

__all__ = ["advise_command"]


@reports_errors
def advise_command(  # noqa: PLR0913 (a command's options are its parameters)
    limit: Annotated[
        int, typer.Option(min=1, max=MAX_REPORTED, help="Shapes looked at, costliest first.")
    ] = 50,
    min_calls: Annotated[int, typer.Option(min=1, help="Skip shapes called fewer times.")] = 1,
    min_total_ms: Annotated[
        float, typer.Option(min=0, help="Skip shapes that cost less in total (ms).")
    ] = 0.0,
    fail_over: Annotated[
        float | None,
        typer.Option(
            min=0,
            help="Exit 3 when a shape slower than this on average (ms) has a suggestion.",
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON document.")] = False,
    apply: Annotated[
        bool, typer.Option("--apply", help="Add the indexes to the design file.")
    ] = False,
    verify: Annotated[
        bool,
        typer.Option(
            "--verify",
            help="Build each suggestion where it harms nothing (a rolled-back transaction "
            "on SQLite, a scratch database on PostgreSQL) and time the shape before and after.",
        ),
    ] = False,
    design: DesignOption = None,
) -> None:
    """Propose indexes for the costliest query shapes (asks the planner; builds nothing)."""
    loaded, settings = design_and_settings(design)
    options = AdviceOptions(min_calls=min_calls, min_total_ms=min_total_ms, limit=limit)

    async def run() -> Advice:
        async with open_index_planner(settings, loaded) as tools:
            shapes = await tools.store.top("total", limit)
            with Progress(console=Console(stderr=True), transient=True) as bar:
                task = bar.add_task("asking the planner", total=len(shapes))
                found = await advise(
                    shapes,
                    tools.planner,
                    options,
                    lambda done, _: bar.update(task, completed=done),
                )
                if not verify:
                    return found
                timing = bar.add_task("timing each suggestion")
                return await verify_advice(
                    found,
                    tools.verifier,
                    lambda done, total: bar.update(timing, completed=done, total=total),
                )

    found = on_database(settings, run())
    if as_json:
        say(json.dumps(found.summary(), indent=2))
    else:
        _report(found)
    if apply and found.indexes():
        if settings.design_path is None:
            raise fail("--apply needs a design file (--design or CHARPENTE_DESIGN)")
        patched = _apply(settings.design_path, found)
        show_plan(on_database(settings, plan_database_migration(settings, patched)))
    if fail_over is not None and found.failing(fail_over):
        raise typer.Exit(3)


def _report(advice: Advice) -> None:
    if not advice.shapes:
        say("no shapes to advise on yet (the servers store them every minute, and at stop)")
        return
    for shape in advice.shapes:
        s = shape.stats.summary()
        say(f"{shape.stats.text}")
        say(f"  {s['calls']} calls, mean {s['mean_ms']} ms, p99 {s['p99_ms']} ms")
        for suggestion in shape.suggestions:
            costs = ""
            if suggestion.cost_before is not None and suggestion.cost_after is not None:
                costs = f" (planner cost {suggestion.cost_before:g} → {suggestion.cost_after:g})"
            say(f"  + index {suggestion.candidate.label}{costs}")
            if suggestion.verified is not None:
                v = suggestion.verified
                say(
                    f"    verified: p50 {v['p50_ms_before']} → {v['p50_ms_after']} ms, "
                    f"p99 {v['p99_ms_before']} → {v['p99_ms_after']} ms, "
                    f"index {v['index_bytes']} bytes"
                )
        for note in shape.notes:
            say(f"  ! {note}")
        if not shape.suggestions and not shape.notes:
            say("  ok: no index to add")
    patch = advice.indexes()
    if patch:
        say("\nadd to the design:")
        for resource, entries in patch.items():
            say(f"  {resource}:")
            say(f"    indexes: [{', '.join('[' + ', '.join(e) + ']' for e in entries)}]")


def _apply(path: Path, advice: Advice) -> Design:
    """Write the indexes into the design file; the design as it now reads."""
    patched = add_indexes(path.read_text(encoding="utf-8"), advice.indexes())
    loaded = load_design_text(patched, str(path))  # a DesignError writes nothing
    path.write_text(patched, encoding="utf-8")
    say(f"\nwrote the new indexes to {path}; `charpente migrate apply` builds them")
    return loaded
