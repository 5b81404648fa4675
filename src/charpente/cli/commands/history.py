"""`charpente history archive`: move old events out of the audit history into a file.

The history is append-only: nothing in the engine updates or deletes its rows, except this
command, and only after the events it removes are written to the file and flushed to disk.
"""

from __future__ import annotations

import datetime
import gzip
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import IO, Annotated

import typer

from charpente.cli.commands.config import design_and_settings, on_database
from charpente.cli.commands.design import DesignOption
from charpente.cli.commands.output import fail, reports_errors, say
from charpente.wiring import archive_history

__all__ = ["history_app"]

history_app = typer.Typer(
    name="history", help="The audit history: archive old events.", no_args_is_help=True
)

_AGE = re.compile(r"(\d{1,5})d")
MIN_DAYS = 1


@history_app.command("archive")
@reports_errors
def archive(
    out: Annotated[
        Path,
        typer.Option(
            "--out", help="Where to append the events (JSON lines; .gz compresses).", dir_okay=False
        ),
    ],
    older_than: Annotated[
        str | None,
        typer.Option(
            "--older-than",
            help="Archive events older than this many days, like 400d "
            "(default: CHARPENTE_HISTORY_RETENTION_DAYS).",
            show_default=False,
        ),
    ] = None,
    design: DesignOption = None,
) -> None:
    """Append events older than --older-than to --out, then delete them from the database."""
    loaded, settings = design_and_settings(design)
    days = _days(older_than, settings.history_retention_days)
    before = datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=days)
    with _append(out) as file:
        archived = on_database(
            settings, archive_history(settings, loaded, before, _durable_writer(file))
        )
    say(f"archived {archived} event(s) older than {before:%Y-%m-%d %H:%M} UTC to {out}")


def _durable_writer(file: IO[bytes]) -> Callable[[list[bytes]], None]:
    def write(lines: list[bytes]) -> None:
        file.writelines(lines)
        file.flush()
        raw = getattr(file, "fileobj", None) or file  # a gzip file flushes into its own file
        raw.flush()
        os.fsync(raw.fileno())

    return write


def _append(out: Path) -> IO[bytes]:
    if out.suffix == ".gz":
        return gzip.open(out, "ab")  # type: ignore[return-value]  # a GzipFile is an IO[bytes]
    return out.open("ab")


def _days(option: str | None, setting: int | None) -> int:
    if option is None:
        if setting is None:
            raise fail("say how old: --older-than 400d, or set CHARPENTE_HISTORY_RETENTION_DAYS")
        return setting
    match = _AGE.fullmatch(option.strip())
    if match is None or int(match[1]) < MIN_DAYS:
        raise fail(f"--older-than is a number of days like 400d, at least {MIN_DAYS}d")
    return int(match[1])
