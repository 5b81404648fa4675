"""`charpente graphql schema`: print the GraphQL schema (SDL) of a design."""

from __future__ import annotations

import typer

from charpente.cli.commands.config import design_and_settings
from charpente.cli.commands.design import DesignArgument, DesignOption, chosen_design
from charpente.cli.commands.output import say
from charpente.compile.graphql_schema import graph_schema

__all__ = ["graphql_app"]

graphql_app = typer.Typer(name="graphql", help="The GraphQL API of a design.", no_args_is_help=True)


@graphql_app.command("schema")
def schema(design: DesignArgument = None, design_option: DesignOption = None) -> None:
    """Print the GraphQL schema (SDL) that /v1/graphql/schema.graphql serves."""
    loaded, _ = design_and_settings(chosen_design(design, design_option))
    say(graph_schema(loaded).sdl.rstrip("\n"))
