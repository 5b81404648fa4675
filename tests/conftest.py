"""Shared fixtures: database URLs for every dialect, each test in its own namespace.

PostgreSQL comes from CHARPENTE_TEST_POSTGRES_URL (default: the local server's `test`
database). Each test gets a fresh schema there, dropped afterwards, so runs never collide.
Without a server the PostgreSQL cases skip, unless CHARPENTE_REQUIRE_SERVICES=1.
"""

from __future__ import annotations

import os
import uuid
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

POSTGRES_URL = os.environ.get(
    "CHARPENTE_TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
)
REQUIRE_SERVICES = os.environ.get("CHARPENTE_REQUIRE_SERVICES") == "1"


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    return "asyncio"


def service_missing(name: str, reason: str) -> None:
    """Skip a test that needs a server, or fail it when CI requires every service."""
    message = f"{name} is not reachable ({reason})"
    if REQUIRE_SERVICES:
        pytest.fail(f"{message}; CHARPENTE_REQUIRE_SERVICES=1 requires it", pytrace=False)
    pytest.skip(message)


_postgres_state: dict[str, str | None] = {}


def _postgres_problem() -> str | None:
    """Why PostgreSQL cannot be used, or None when it can (checked once per run)."""
    if "problem" not in _postgres_state:
        import asyncio

        async def probe() -> None:
            import asyncpg

            dsn = POSTGRES_URL.replace("postgresql+asyncpg://", "postgresql://")
            conn = await asyncpg.connect(dsn, timeout=3)
            await conn.close()

        try:
            asyncio.run(probe())
            _postgres_state["problem"] = None
        except Exception as exc:  # any failure to connect means: no server here
            _postgres_state["problem"] = f"{type(exc).__name__}: {exc}"
    return _postgres_state["problem"]


@dataclass(frozen=True)
class DatabaseTarget:
    """Where a test's tables live: a URL and, on PostgreSQL, the schema reserved for it."""

    dialect: str
    url: str
    schema: str | None = None


@pytest.fixture(params=["sqlite", "postgres"])
def db_target(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[DatabaseTarget]:
    """An empty database namespace on each dialect: a new SQLite file, or a new PG schema."""
    if request.param == "sqlite":
        yield DatabaseTarget("sqlite", f"sqlite+aiosqlite:///{tmp_path / 'test.db'}")
        return
    yield from _postgres_target()


@pytest.fixture
def pg_target() -> Iterator[DatabaseTarget]:
    """An empty PostgreSQL schema (for tests that only make sense on PostgreSQL)."""
    yield from _postgres_target()


def _postgres_target() -> Iterator[DatabaseTarget]:
    problem = _postgres_problem()
    if problem is not None:
        service_missing("PostgreSQL", problem)
    import asyncio

    import asyncpg

    schema = f"t_{uuid.uuid4().hex[:16]}"
    dsn = POSTGRES_URL.replace("postgresql+asyncpg://", "postgresql://")

    async def run(sql: str) -> None:
        conn = await asyncpg.connect(dsn)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(run(f'CREATE SCHEMA "{schema}"'))
    try:
        yield DatabaseTarget("postgres", POSTGRES_URL, schema)
    finally:
        asyncio.run(_drop_schema(dsn, schema))


async def _drop_schema(dsn: str, schema: str) -> None:
    """Drop a test's schema. A session the test left open in a transaction on its tables
    would make DROP wait forever (and stall the run): after a lock wait of 10 s, those
    sessions are ended, named in a warning, and the drop is tried again."""
    import asyncpg

    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("SET lock_timeout = '10s'")
        for _ in range(3):
            try:
                await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
                return
            except asyncpg.LockNotAvailableError:
                holders = await conn.fetch(_LOCK_HOLDERS, schema)
                warnings.warn(
                    f"sessions left open on schema {schema} were ended: "
                    + "; ".join(f"{h['state']}: {h['query'][:200]}" for h in holders),
                    stacklevel=1,
                )
                for holder in holders:
                    await conn.execute("SELECT pg_terminate_backend($1)", holder["pid"])
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await conn.close()


_LOCK_HOLDERS = """
SELECT DISTINCT a.pid, a.state, a.query
FROM pg_locks l
JOIN pg_class c ON c.oid = l.relation
JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_stat_activity a ON a.pid = l.pid
WHERE n.nspname = $1 AND l.granted AND a.pid <> pg_backend_pid()
"""
