"""What the database lacks of the design: its tables and columns that are not there.

Only what the design uses counts: tables or columns the database has beyond it (a newer
design migrated from elsewhere) are compatible, and a server keeps serving over them.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from charpente.design.model import Design
from charpente.sql.schema import build_metadata

__all__ = ["missing_from_database"]


async def missing_from_database(engine: AsyncEngine, design: Design) -> list[str]:
    """`table posts`, `column posts.title`: what the design needs and the database lacks."""
    metadata = build_metadata(design)
    async with engine.connect() as conn:
        return await conn.run_sync(_missing, metadata)


def _missing(conn: sa.Connection, metadata: sa.MetaData) -> list[str]:
    inspector = sa.inspect(conn)
    present = set(inspector.get_table_names())
    lacking = []
    for name, table in sorted(metadata.tables.items()):
        if name not in present:
            lacking.append(f"table {name}")
            continue
        columns = {c["name"] for c in inspector.get_columns(name)}
        lacking += [f"column {name}.{c.name}" for c in table.columns if c.name not in columns]
    return lacking
