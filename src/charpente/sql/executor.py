"""How the Database adapter runs a SQLAlchemy statement on one connection (`Executor`).

SQLite runs statements through SQLAlchemy (`SaExecutor`); PostgreSQL through asyncpg
(`charpente.sql.postgres.PgExecutor`). Either way a row comes back as a plain record.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from charpente.compile.plan import Record
from charpente.sql.observe import observed

__all__ = ["Executor", "Params", "SaExecutor"]

Params = Mapping[str, Any] | None


class Executor(Protocol):
    """Runs statements on one connection; integrity errors propagate as the driver raises
    them (see charpente.sql.integrity.classify)."""

    async def rows(self, stmt: sa.Executable, params: Params = None) -> list[Record]:
        """Every row the statement returns, as records keyed by column name."""

    async def first(self, stmt: sa.Executable, params: Params = None) -> Record | None:
        """The first row, or None when there is none."""

    async def scalar(self, stmt: sa.Executable, params: Params = None) -> Any:
        """The first column of the first row."""

    async def run(self, stmt: sa.Executable, params: Params = None) -> None:
        """Run a statement whose rows, if any, are not wanted."""


class SaExecutor:
    """An Executor over a SQLAlchemy connection."""

    def __init__(self, conn: AsyncConnection) -> None:
        self.conn = conn
        self._system = conn.dialect.name  # "sqlite", "postgresql"

    async def rows(self, stmt: sa.Executable, params: Params = None) -> list[Record]:
        return [row._asdict() for row in await self._execute(stmt, params)]

    async def first(self, stmt: sa.Executable, params: Params = None) -> Record | None:
        row = (await self._execute(stmt, params)).first()
        return None if row is None else row._asdict()

    async def scalar(self, stmt: sa.Executable, params: Params = None) -> Any:
        return (await self._execute(stmt, params)).scalar_one()

    async def run(self, stmt: sa.Executable, params: Params = None) -> None:
        await self._execute(stmt, params)

    async def _execute(self, stmt: sa.Executable, params: Params) -> sa.CursorResult[Any]:
        with observed(self._system, stmt, lambda: self._text(stmt)):
            return await self.conn.execute(stmt, params)

    def _text(self, stmt: sa.Executable) -> str:
        """The statement as the dialect compiles it, with placeholders for the values."""
        return str(stmt.compile(dialect=self.conn.dialect))  # type: ignore[attr-defined]
