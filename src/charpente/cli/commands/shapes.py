"""`charpente shapes`: the shape log of every process, straight from the database."""

from __future__ import annotations

import enum
import json
from typing import Annotated

import typer

from charpente.cli.commands.config import design_and_settings, on_database
from charpente.cli.commands.design import DesignOption
from charpente.cli.commands.output import reports_errors, say
from charpente.runtime.shapes import MAX_REPORTED, ShapeStats
from charpente.wiring import open_shape_store

__all__ = ["shapes"]


class Order(enum.StrEnum):
    """How shapes are ranked."""

    total = "total"
    slowest = "slowest"
    calls = "calls"


@reports_errors
def shapes(
    order: Annotated[
        Order, typer.Option(help="total: most time spent; slowest: highest mean; calls.")
    ] = Order.total,
    limit: Annotated[int, typer.Option(min=1, max=MAX_REPORTED, help="How many shapes.")] = 20,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON document.")] = False,
    design: DesignOption = None,
) -> None:
    """Show the query shapes the servers counted: the most expensive or the slowest first."""
    loaded, settings = design_and_settings(design)

    async def read() -> list[ShapeStats]:
        async with open_shape_store(settings, loaded) as store:
            return await store.top(order.value, limit)

    found = on_database(settings, read())
    if as_json:
        say(json.dumps({"data": [s.summary() for s in found]}, indent=2))
        return
    if not found:
        say("no shapes counted yet (servers store their counts every CHARPENTE_SHAPE_LOG_SECONDS)")
        return
    say(f"{'total ms':>10} {'calls':>8} {'mean ms':>9} {'p99 ms':>8} {'rows':>6}  shape")
    for stats in found:
        s = stats.summary()
        say(
            f"{s['total_ms']:>10} {s['calls']:>8} {s['mean_ms']:>9} {s['p99_ms']:>8} "
            f"{s['rows_per_call']:>6}  {s['shape']}"
        )
