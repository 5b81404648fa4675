"""Fixtures: a cluster of nodes over this test's database and an in-process bus, or a
Redis stream shared by nodes on PostgreSQL."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis
from redis.exceptions import RedisError
from tests.changes.support import Cluster
from tests.conftest import service_missing

from charpente.bus.memory import MemoryBus
from charpente.bus.redis_streams import RedisStreamBus

REDIS_URL = os.environ.get("CHARPENTE_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


@pytest.fixture
async def cluster(db_target: Any, anyio_backend: str) -> AsyncIterator[Cluster]:
    """Nodes on this test's database (SQLite and PostgreSQL) sharing one MemoryBus."""
    built = Cluster(db_target.url, db_target.schema, MemoryBus())
    try:
        yield built
    finally:
        await built.close()


@pytest.fixture
async def sqlite_cluster(tmp_path: Path, anyio_backend: str) -> AsyncIterator[Cluster]:
    """Nodes on SQLite only, for what does not depend on the database."""
    built = Cluster(f"sqlite+aiosqlite:///{tmp_path / 'test.db'}", None, MemoryBus())
    try:
        yield built
    finally:
        await built.close()


@pytest.fixture
async def redis_cluster(pg_target: Any, anyio_backend: str) -> AsyncIterator[Cluster]:
    """Nodes on one PostgreSQL schema sharing a Redis stream of their own."""
    stream = f"charpente:test:{uuid.uuid4().hex[:12]}:events"
    client = Redis.from_url(REDIS_URL)
    try:
        async with asyncio.timeout(5):
            await client.ping()
    except (OSError, RedisError, TimeoutError) as exc:
        await client.aclose()
        service_missing("Redis", f"{type(exc).__name__}: {exc}")
    bus = RedisStreamBus(REDIS_URL, stream=stream)
    await bus.start()
    built = Cluster(pg_target.url, pg_target.schema, bus)
    try:
        yield built
    finally:
        await built.close()
        await client.delete(stream)
        await client.aclose()
