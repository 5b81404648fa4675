"""PostgreSQL restarted under load (`pg_ctl -m fast stop`, then start, several times, on a
private cluster): no answer is a 500, every 503 carries Retry-After, every acknowledged
write survives, the server recovers by itself; the relay says one line when an outage
starts and one when it ends, without a traceback."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from charpente.bus.memory import MemoryBus
from charpente.http.app import build_app
from charpente.loader import load_design_text
from charpente.runtime.relay import Relay
from charpente.runtime.resilience import Backoff, CircuitBreaker
from charpente.runtime.service import Service
from charpente.sql.database import SqlDatabase
from charpente.sql.engine import create_engine
from charpente.sql.outbox import SqlOutbox
from charpente.sql.schema import build_metadata

pytestmark = pytest.mark.anyio

DESIGN = load_design_text(
    """
charpente: 1
name: restarts
resources:
  notes:
    access: {read: true, create: true}
    fields:
      text: {type: string, required: true, max_length: 50}
    events: [created]
"""
)
RESTARTS = 3
DOWN_FOR = 0.5  # seconds between stop and start


@contextlib.asynccontextmanager
async def serving(url: str) -> AsyncIterator[tuple[httpx.AsyncClient, Service]]:
    engine = create_engine(url, pool_size=8)
    async with engine.begin() as conn:
        await conn.run_sync(build_metadata(DESIGN).drop_all)
        await conn.run_sync(build_metadata(DESIGN).create_all)
    database = SqlDatabase(engine, DESIGN)
    service = Service(DESIGN, database)
    app = build_app(service, DESIGN)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            yield client, service
    finally:
        await database.close()


async def restart_several_times(cluster: Any) -> None:
    for _ in range(RESTARTS):
        await asyncio.sleep(0.6)
        await asyncio.to_thread(cluster.stop)
        await asyncio.sleep(DOWN_FOR)
        await asyncio.to_thread(cluster.start)
    await asyncio.sleep(0.5)


async def test_restarts_under_write_load_answer_503_never_500(private_postgres: Any) -> None:
    statuses: Counter[int] = Counter()
    missing_retry_after: list[str] = []
    acknowledged: list[str] = []
    async with serving(private_postgres.url) as (client, _):
        stop = asyncio.Event()

        async def write(worker: int) -> None:
            n = 0
            while not stop.is_set():
                n += 1
                answer = await client.post("/v1/notes", json={"text": f"w{worker}-{n}"})
                note(answer)
                if answer.status_code == 201:
                    acknowledged.append(answer.json()["id"])
                elif answer.status_code == 503:
                    await asyncio.sleep(0.01)

        async def read() -> None:
            while not stop.is_set():
                note(await client.get("/v1/notes?limit=5"))

        def note(answer: httpx.Response) -> None:
            statuses[answer.status_code] += 1
            if answer.status_code == 503 and "retry-after" not in answer.headers:
                missing_retry_after.append(answer.text)

        tasks = [asyncio.create_task(write(i)) for i in range(6)]
        tasks += [asyncio.create_task(read()) for _ in range(2)]
        try:
            await restart_several_times(private_postgres)
        finally:
            stop.set()
            await asyncio.gather(*tasks)
        # recovered by itself: the next requests succeed
        assert (await client.post("/v1/notes", json={"text": "after"})).status_code == 201
        assert (await client.get("/readyz")).status_code == 200
    assert set(statuses) <= {200, 201, 503}, statuses
    assert statuses[503] > 0, statuses  # the restarts were seen
    assert statuses[201] > 0, statuses
    assert not missing_retry_after
    engine = create_engine(private_postgres.url)
    try:
        async with engine.connect() as conn:
            rows = await conn.execute(sa.text("SELECT id::text FROM notes"))
            stored = {row[0] for row in rows}
    finally:
        await engine.dispose()
    assert set(acknowledged) <= stored


async def test_the_relay_logs_an_outage_once_when_it_starts_and_once_when_it_ends(
    private_postgres: Any, caplog: pytest.LogCaptureFixture
) -> None:
    async with serving(private_postgres.url) as (client, service):
        assert isinstance(service.database, SqlDatabase)
        relay = Relay(
            SqlOutbox(service.database, "urn:charpente:restarts"),
            MemoryBus(),
            service.clock,
            breaker=CircuitBreaker(threshold=3, cool_down=0.2),
            backoff=Backoff(base=0.05, cap=0.2),
        )
        relay.idle = 0.05
        stop = asyncio.Event()
        with caplog.at_level(logging.INFO, logger="charpente.relay"):
            running = asyncio.create_task(relay.run(stop))
            assert (await client.post("/v1/notes", json={"text": "one"})).status_code == 201
            await asyncio.sleep(0.3)
            await asyncio.to_thread(private_postgres.stop)
            await asyncio.sleep(1.5)  # many failed rounds
            await asyncio.to_thread(private_postgres.start)
            assert (await client.post("/v1/notes", json={"text": "two"})).status_code in (201, 503)
            for _ in range(100):
                if relay.last_error is None and relay.published >= 1:
                    break
                await asyncio.sleep(0.05)
            await asyncio.sleep(0.3)
            stop.set()
            await running
    records = [r for r in caplog.records if r.name == "charpente.relay"]
    assert not [r for r in records if r.exc_info], "no traceback during an outage"
    started = [r for r in records if "retrying with backoff" in r.getMessage()]
    ended = [r for r in records if "relaying again" in r.getMessage()]
    assert len(started) == 1, [r.getMessage() for r in records]
    assert len(ended) == 1, [r.getMessage() for r in records]
    assert "database is not reachable" in started[0].getMessage()
