"""The relay's metrics: events published, and the outbox's lag and pending count."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest

from charpente.bus.memory import MemoryBus
from charpente.loader import load_design_text
from charpente.runtime import metrics
from charpente.runtime.caller import SYSTEM
from charpente.runtime.relay import Relay
from charpente.runtime.service import Service
from charpente.sql.database import SqlDatabase
from charpente.sql.engine import create_engine
from charpente.sql.outbox import SqlOutbox
from charpente.sql.schema import build_metadata

pytestmark = pytest.mark.anyio

DESIGN = load_design_text(
    """
charpente: 1
name: relaymetrics
resources:
  posts:
    fields:
      title: {type: string, required: true}
    events: [created]
"""
)


@contextlib.asynccontextmanager
async def opened(target: Any) -> AsyncIterator[tuple[Service, SqlDatabase]]:
    engine = create_engine(target.url, schema=target.schema)
    async with engine.begin() as conn:
        await conn.run_sync(build_metadata(DESIGN).create_all)
    database = SqlDatabase(engine, DESIGN)
    try:
        yield Service(DESIGN, database), database
    finally:
        await database.close()


def value(metric: Any) -> float:
    return float(metric._value.get())


async def test_the_relay_reports_published_events_and_the_outbox_lag(db_target: Any) -> None:
    async with opened(db_target) as (service, database):
        relay = Relay(SqlOutbox(database, "urn:charpente:test"), MemoryBus(), service.clock)
        for n in range(3):
            await service.create("posts", {"title": f"p{n}"}, caller=SYSTEM)
        await relay._update_gauges()
        assert value(metrics.OUTBOX_PENDING) == 3
        assert value(metrics.OUTBOX_LAG) >= 0
        published = value(metrics.OUTBOX_PUBLISHED)
        assert await relay.relay_once() == 3
        assert value(metrics.OUTBOX_PUBLISHED) == published + 3
        relay._last_gauges = 0.0
        await relay._update_gauges()
        assert value(metrics.OUTBOX_PENDING) == 0
        assert value(metrics.OUTBOX_LAG) == 0
