"""What a command works on: the settings from the environment, overridden by its options."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

import typer

from charpente.design.model import Design
from charpente.errors import CharpenteError, ConfigError
from charpente.runtime.logcontext import json_line
from charpente.settings import Settings, redacted_url, settings_from_process
from charpente.wiring import load_configured_design

__all__ = [
    "NO_DESIGN_MESSAGE",
    "design_and_settings",
    "on_database",
    "say_design",
    "settings_for",
]

NO_DESIGN_MESSAGE = (
    "no design.yaml here and CHARPENTE_DESIGN is not set: write one with `charpente init` "
    "(or pass --design PATH)"
)

T = TypeVar("T")


def settings_for(design: Path | None) -> Settings:
    """The process's settings, with `--design` (when given) in place of CHARPENTE_DESIGN."""
    settings = settings_from_process()
    if design is None:
        if settings.design_missing:
            raise ConfigError(NO_DESIGN_MESSAGE)
        return settings
    if not design.is_file():
        raise ConfigError(f"{design}: no such design file (write one with `charpente init`)")
    return dataclasses.replace(settings, design_path=design)


def design_and_settings(
    design: Path | None, log_format: str | None = None
) -> tuple[Design, Settings]:
    """The loaded design and the settings it came from (with `--log-format` when given).
    Raises DesignError, ConfigError."""
    settings = settings_for(design)
    if log_format is not None:
        from charpente.cli.commands.observe import with_log_format

        settings = with_log_format(settings, log_format)
    loaded = load_configured_design(settings)
    say_design(settings, loaded)
    return loaded, settings


def say_design(settings: Settings, design: Design) -> None:
    """The first line of a command: which design it works on (on stderr, so that what a
    command prints on stdout stays fit for pipes)."""
    line = f"design: {settings.design_label} ({design.name})"
    if settings.log_format == "json":  # stderr is the log: one JSON object per line
        line = json_line("charpente.cli", line)
    typer.echo(line, err=True)


def on_database(settings: Settings, work: Coroutine[Any, Any, T]) -> T:
    """Run `work` (which talks to the configured database); a driver failure becomes one line."""
    try:
        return asyncio.run(work)
    except CharpenteError:
        raise
    except Exception as exc:  # unreachable server, bad credentials, missing driver…
        where = redacted_url(settings.database_url)
        raise ConfigError(
            f"the database {where} cannot be used: {type(exc).__name__}: {_first_line(exc)}"
        ) from None


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else "no detail"
