"""Job fixtures: `make_queue(hooks)` on every dialect, `make_pg_queue` on PostgreSQL only."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

# Tests import the helpers beside this file (`import job_queues`).
sys.path.insert(0, str(Path(__file__).parent))

from job_queues import MakeQueue, open_queues


@pytest.fixture
async def make_queue(db_target: Any, anyio_backend: str) -> AsyncIterator[MakeQueue]:
    async with open_queues(db_target) as make:
        yield make


@pytest.fixture
async def make_pg_queue(pg_target: Any, anyio_backend: str) -> AsyncIterator[MakeQueue]:
    async with open_queues(pg_target) as make:
        yield make
