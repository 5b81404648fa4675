"""The `charpente` command: the subcommand table, `--version`, and the exit codes.

Exit codes (docs/cli.md lists them): 0 success, 1 a CharpenteError (printed as one line
per problem, never a traceback), 2 a usage error, 3 `serve` could not start (its port is
taken, or the server failed while starting), 130 interrupted (Ctrl-C).
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import Annotated

import typer

from charpente.cli.commands.accounts import accounts_app, auth_app
from charpente.cli.commands.advise import advise_command
from charpente.cli.commands.design import check, init, openapi
from charpente.cli.commands.flags import flags_app
from charpente.cli.commands.graphql import graphql_app
from charpente.cli.commands.history import history_app
from charpente.cli.commands.jobs import jobs_app
from charpente.cli.commands.keys import keys_app
from charpente.cli.commands.migrate import migrate_app
from charpente.cli.commands.serve import serve
from charpente.cli.commands.shapes import shapes
from charpente.cli.commands.webhooks import webhooks_app
from charpente.cli.commands.worker import worker

__all__ = ["app", "main", "package_version"]

app = typer.Typer(
    name="charpente",
    help="Run a production-grade REST backend from one design file.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.command()(init)
app.command()(check)
app.command()(serve)
app.command()(worker)
app.add_typer(migrate_app)
app.command()(openapi)
app.add_typer(accounts_app)
app.add_typer(keys_app)
app.add_typer(auth_app)
app.add_typer(history_app)
app.add_typer(jobs_app)
app.add_typer(webhooks_app)
app.add_typer(flags_app)
app.command()(shapes)
app.command("advise")(advise_command)
app.add_typer(graphql_app)


def package_version() -> str:
    """The installed version of charpente."""
    try:
        return version("charpente")
    except PackageNotFoundError:
        return "unknown"


def _print_version(requested: bool) -> None:
    if requested:
        typer.echo(f"charpente {package_version()}")
        raise typer.Exit()


@app.callback()
def _root(
    show_version: Annotated[
        bool,
        typer.Option(
            "--version",
            callback=_print_version,
            is_eager=True,
            help="Print the version and exit.",
        ),
    ] = False,
) -> None:
    """charpente: one design file becomes a versioned, documented REST API."""


def main() -> None:
    """The console entry point."""
    app()
