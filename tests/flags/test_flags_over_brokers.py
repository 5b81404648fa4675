"""A flag changed in one process reaches another within a second through each real broker
(RabbitMQ, NATS JetStream, Redis Streams), pushed, not polled: the other process's periodic
reload is turned off here."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from tests.bus.brokers import Broker, reachable

from charpente.loader import load_design_text
from charpente.runtime.caller import SYSTEM
from charpente.runtime.flag_control import FlagControl, FlagSync
from charpente.runtime.flags import FlagBoard
from charpente.sql.database import SqlDatabase
from charpente.sql.engine import create_engine
from charpente.sql.flagstore import SqlFlagStore
from charpente.sql.schema import build_metadata

pytestmark = pytest.mark.anyio

DESIGN = load_design_text("""
charpente: 1
name: feed
flags:
  reposts: {rollout: 0%}
resources:
  posts:
    fields: {body: text}
    access: {read: flag("reposts")}
""")


@pytest.fixture(params=["rabbitmq", "nats", "redis"])
async def broker(request: pytest.FixtureRequest, anyio_backend: str) -> AsyncIterator[Broker]:
    found = await reachable(request.param)
    try:
        yield found
    finally:
        await found.cleanup()


@contextlib.asynccontextmanager
async def process(url: str, broker: Broker) -> AsyncIterator[FlagControl]:
    """One serve process's flags: its own engine, bus connection and board."""
    engine = create_engine(url)
    database = SqlDatabase(engine, DESIGN)
    bus = broker.bus()
    await bus.start()
    control = FlagControl(DESIGN, FlagBoard(DESIGN.flags), SqlFlagStore(database), bus=bus)
    sync = FlagSync(control, every=3600)  # only the bus can bring the change in time
    await sync.start()
    try:
        yield control
    finally:
        await sync.stop()
        await database.close()


async def test_a_change_reaches_the_other_process_within_a_second(broker, tmp_path: Path):
    url = f"sqlite+aiosqlite:///{tmp_path / 'flags.db'}"
    engine = create_engine(url)
    async with engine.begin() as conn:
        await conn.run_sync(build_metadata(DESIGN).create_all)
    await engine.dispose()
    async with process(url, broker) as one, process(url, broker) as other:
        started = time.monotonic()
        await one.set(SYSTEM, "reposts", {"rollout": 100}, actor="test")
        while other.board.settings["reposts"].rollout != 100:
            assert time.monotonic() - started < 1.0, f"not followed through {broker.kind}"
            await asyncio.sleep(0.01)
