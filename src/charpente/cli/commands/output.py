"""How the CLI speaks: one clear line per error on stderr, exit 1 — never a traceback
(even for a bug: one line naming it; Ctrl-C: `interrupted`, exit 130).

Messages are printed as plain text (never as Rich markup: they may hold brackets).
"""

from __future__ import annotations

import functools
import traceback
from collections.abc import Callable
from typing import ParamSpec, TypeVar

import click
import typer

from charpente.errors import CharpenteError, DesignError, Problem
from charpente.settings import settings_from_process

__all__ = ["INTERRUPTED", "fail", "print_problems", "reports_errors", "say", "warn"]

INTERRUPTED = 130  # Ctrl-C during a command (128 + SIGINT, as shells report it)

P = ParamSpec("P")
R = TypeVar("R")


def say(text: str) -> None:
    """A line on stdout."""
    typer.echo(text)


def warn(text: str) -> None:
    """A line on stderr, in yellow."""
    typer.secho(text, fg=typer.colors.YELLOW, err=True)


def fail(text: str, code: int = 1) -> typer.Exit:
    """Print `error: text` on stderr; the Exit to raise (`raise fail(...)`)."""
    typer.secho(f"error: {text}", fg=typer.colors.RED, err=True)
    return typer.Exit(code)


def print_problems(problems: list[Problem]) -> None:
    """Every problem as `file:line:col: severity: message`, errors and warnings alike."""
    for problem in problems:
        color = typer.colors.YELLOW if problem.severity == "warning" else typer.colors.RED
        typer.secho(str(problem), fg=color, err=True)


def reports_errors(command: Callable[P, R]) -> Callable[P, R]:
    """Turn a CharpenteError (or a file error) raised by `command` into lines and exit 1."""

    @functools.wraps(command)
    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return command(*args, **kwargs)
        except DesignError as exc:
            print_problems(exc.problems)
            raise fail(_count(exc.problems)) from None
        except CharpenteError as exc:
            raise fail(str(exc)) from None
        except OSError as exc:
            raise fail(
                f"{exc.strerror or exc}: {exc.filename}" if exc.filename else str(exc)
            ) from None
        except KeyboardInterrupt:
            raise fail("interrupted", code=INTERRUPTED) from None
        except _WAYS_OUT:
            raise  # typer's and click's own: an exit code, an abort, a usage error
        except Exception as exc:  # a bug: one line here, the traceback at CHARPENTE_LOG_LEVEL=debug
            if _debugging():
                traceback.print_exc()
            text = (str(exc).strip().splitlines() or ["no detail"])[0]
            raise fail(
                f"unexpected {type(exc).__name__}: {text} (a bug in charpente: please report it)"
            ) from None

    return run


_WAYS_OUT = (
    typer.Exit,
    typer.Abort,
    typer.exceptions.TyperException,
    click.exceptions.Exit,
    click.exceptions.Abort,
    click.ClickException,
)


def _debugging() -> bool:
    try:
        return settings_from_process().log_level == "debug"
    except CharpenteError:
        return False


def _count(problems: list[Problem]) -> str:
    errors = sum(1 for p in problems if p.severity == "error")
    return f"the design has {errors} error{'s' if errors != 1 else ''}"
