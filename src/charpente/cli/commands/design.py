"""`charpente init`, `check` and `openapi`: write, check and describe a design."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from charpente.cli.commands.config import design_and_settings, settings_for
from charpente.cli.commands.output import fail, print_problems, reports_errors, say
from charpente.compile.graphql_schema import graph_problems
from charpente.compile.openapi import openapi_document
from charpente.errors import DesignError
from charpente.settings import DEFAULT_DESIGN_FILE
from charpente.templates import template_names, template_summary, template_text
from charpente.wiring import hooks_flag_problems, load_configured_design

__all__ = ["DesignArgument", "DesignOption", "check", "chosen_design", "init", "openapi"]

DesignOption = Annotated[
    Path | None,
    typer.Option(
        "--design",
        "-d",
        help="The design file (default: $CHARPENTE_DESIGN, else ./design.yaml).",
        show_default=False,
    ),
]
DesignArgument = Annotated[
    Path | None,
    typer.Argument(
        help="The design file, as --design (either may be used).",
        show_default=False,
    ),
]


def chosen_design(positional: Path | None, option: Path | None) -> Path | None:
    """The design given positionally or with --design (both: only when they agree)."""
    if positional is not None and option is not None and positional != option:
        raise fail(f"two designs given ({positional} and --design {option}): give one", code=2)
    return positional if positional is not None else option


@reports_errors
def init(
    template: Annotated[
        str,
        typer.Argument(help=f"The starter design to copy: {', '.join(template_names())}."),
    ] = "social",
    directory: Annotated[
        Path, typer.Argument(help="Where to write design.yaml (created if missing).")
    ] = Path("."),
    list_templates: Annotated[
        bool, typer.Option("--list", help="List the templates and what each holds.")
    ] = False,
) -> None:
    """Write DIRECTORY/design.yaml from a template; never overwrites a file."""
    names = template_names()
    if list_templates:
        width = max(len(name) for name in names)
        for name in names:
            say(f"{name:<{width}}  {template_summary(name)}")
        return
    if template not in names:
        raise fail(f"no template {template!r}; templates: {', '.join(names)}", code=2)
    target = directory / DEFAULT_DESIGN_FILE
    if target.exists():
        raise fail(f"{target} already exists: not overwriting it")
    directory.mkdir(parents=True, exist_ok=True)
    target.write_text(template_text(template), encoding="utf-8")
    say(f"wrote {target} (the {template} template; others: `charpente init --list`)")
    say("next: edit it, then `charpente check` and `charpente serve --migrate`")


@reports_errors
def check(design: DesignArgument = None, design_option: DesignOption = None) -> None:
    """Check a design: print every problem as file:line:col; exit 1 if any is an error."""
    settings = settings_for(chosen_design(design, design_option))
    try:
        loaded = load_configured_design(settings)
    except DesignError as exc:
        print_problems(exc.problems)
        errors = sum(1 for p in exc.problems if p.severity == "error")
        raise typer.Exit(1 if errors else 0) from None
    for warning in loaded.warnings:
        typer.secho(warning, fg=typer.colors.YELLOW, err=True)
    hook_problems = hooks_flag_problems(settings, loaded)
    if hook_problems:
        print_problems(hook_problems)
        raise typer.Exit(1)
    graphql_problems = graph_problems(loaded)
    if graphql_problems:
        print_problems(graphql_problems)
    count = len(loaded.resources)
    say(f"{settings.design_label}: ok ({count} resource{'s' if count != 1 else ''})")


@reports_errors
def openapi(
    design: DesignArgument = None,
    design_option: DesignOption = None,
    indent: Annotated[
        int, typer.Option(min=0, max=8, help="Spaces per level; 0 prints one line.")
    ] = 2,
) -> None:
    """Print the OpenAPI 3.1 document of a design (what /openapi.json serves)."""
    loaded, _ = design_and_settings(chosen_design(design, design_option))
    document = openapi_document(loaded)
    say(json.dumps(document, indent=indent or None, ensure_ascii=False))
