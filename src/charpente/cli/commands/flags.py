"""`charpente flags …`: feature flags straight on the database (no server needed; the
database must be migrated): list them, change one (announced on the bus, so servers follow
within a second), and report the ones that should go."""

from __future__ import annotations

import datetime
from collections.abc import Awaitable, Callable
from typing import Annotated, TypeVar

import typer

from charpente.cli.commands.config import design_and_settings, on_database
from charpente.cli.commands.design import DesignOption
from charpente.cli.commands.output import fail, reports_errors, say
from charpente.design.model import Design
from charpente.runtime.caller import SYSTEM
from charpente.runtime.flag_control import FlagControl
from charpente.runtime.flag_hygiene import flag_findings
from charpente.settings import Settings
from charpente.wiring import flags_in_use, open_flags

__all__ = ["flags_app"]

T = TypeVar("T")

flags_app = typer.Typer(
    name="flags",
    help="Feature flags: list them, change one, find the ones to remove (no server needed).",
    no_args_is_help=True,
)


def _on_flags(design: Design, settings: Settings, work: Callable[[FlagControl], Awaitable[T]]) -> T:
    async def run() -> T:
        async with open_flags(settings, design) as control:
            return await work(control)

    return on_database(settings, run())


@flags_app.command("list")
@reports_errors
def list_flags(design: DesignOption = None) -> None:
    """Show each flag: its setting now, and when and by whom it was last changed."""
    loaded, settings = design_and_settings(design)

    async def described(control: FlagControl) -> list[dict[str, object]]:
        return control.describe(SYSTEM)

    found = _on_flags(loaded, settings, described)
    if not found:
        say("the design declares no flags")
    for flag in found:
        say(_line(flag))


@flags_app.command("set")
@reports_errors
def set_flag(
    name: Annotated[str, typer.Argument(help="The flag to change.")],
    rollout: Annotated[
        int | None, typer.Option(min=0, max=100, help="The share of callers, in percent.")
    ] = None,
    default: Annotated[
        bool | None, typer.Option("--default/--no-default", help="What everyone else gets.")
    ] = None,
    allow: Annotated[
        str | None, typer.Option(help="Roles that always have it, comma-separated ('' for none).")
    ] = None,
    variant: Annotated[
        list[str] | None, typer.Option(help="A variant's share, as name=percent (repeat).")
    ] = None,
    by: Annotated[str, typer.Option(help="Who makes the change (kept in the history).")] = "cli",
    design: DesignOption = None,
) -> None:
    """Change a flag at run time: stored with a history entry, announced to the servers."""
    body: dict[str, object] = {}
    if rollout is not None:
        body["rollout"] = rollout
    if default is not None:
        body["default"] = default
    if allow is not None:
        body["allow"] = [role.strip() for role in allow.split(",") if role.strip()]
    if variant:
        body["variants"] = _variants(variant)
    if not body:
        raise fail("give at least one of --rollout, --default, --allow, --variant", code=2)
    loaded, settings = design_and_settings(design)

    async def change(control: FlagControl) -> dict[str, object]:
        return await control.set(SYSTEM, name, body, actor=by[:100])

    say(_line(_on_flags(loaded, settings, change)))


@flags_app.command("status")
@reports_errors
def status(design: DesignOption = None) -> None:
    """Flags to remove: at 0% or 100% unchanged for 30 days, past `expires`, read by nothing."""
    loaded, settings = design_and_settings(design)

    async def findings(control: FlagControl) -> list[str]:
        now = datetime.datetime.now(datetime.UTC)
        used = flags_in_use(settings, loaded)
        found = flag_findings(loaded.flags, control.board.settings, control.stored, used, now)
        return [str(finding) for finding in found]

    lines = _on_flags(loaded, settings, findings)
    for line in lines:
        say(line)
    if not lines:
        say("every flag is in use, current and not yet settled")


def _variants(items: list[str]) -> dict[str, str]:
    shares: dict[str, str] = {}
    for item in items:
        name, sep, share = item.partition("=")
        if not sep:
            raise fail(f"write a variant as name=percent, not {item!r}", code=2)
        shares[name.strip()] = share.strip()
    return shares


def _line(flag: dict[str, object]) -> str:
    """`name  rollout 10%  default off  allow a,b  variants a=50% b=50%  changed … by …`."""
    rollout = flag["rollout"]
    parts = [
        str(flag["name"]),
        "no rollout" if rollout is None else f"rollout {rollout}%",
        f"default {'on' if flag['default'] else 'off'}",
    ]
    allow = flag["allow"]
    if isinstance(allow, list) and allow:
        parts.append(f"allow {','.join(str(r) for r in allow)}")
    variants = flag["variants"]
    if isinstance(variants, dict) and variants:
        parts.append("variants " + " ".join(f"{n}={w}%" for n, w in variants.items()))
    if flag["changed_at"] is not None:
        parts.append(f"changed {flag['changed_at']} by {flag['changed_by'] or '-'}")
    return "  ".join(parts)
