"""`charpente worker` says what it does: at most one info line per period, none when idle,
and a summary when it stops."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from charpente.loader import load_design_text
from charpente.runtime.activity import Activity, ActivityLog, describe
from charpente.runtime.caller import SYSTEM
from charpente.runtime.service import Service
from charpente.settings import Settings
from charpente.sql.database import SqlDatabase
from charpente.sql.engine import create_engine
from charpente.wiring import apply_database_migration, run_worker

DESIGN = """
charpente: 1
name: acts
resources:
  posts:
    fields:
      title: {type: string, required: true}
    events: [created]
"""


def test_describe_counts_in_words() -> None:
    assert describe(Activity(relayed=1, sent=2, send_failed=1, jobs_done=1)) == (
        "relayed 1 event, 3 webhook deliveries (1 failed), 1 job (none failed)"
    )
    assert describe(Activity()) == (
        "relayed 0 events, 0 webhook deliveries (none failed), 0 jobs (none failed)"
    )


def test_a_period_logs_what_happened_in_it_and_nothing_when_idle(
    caplog: pytest.LogCaptureFixture,
) -> None:
    counts = [Activity(relayed=5)]
    log = ActivityLog(lambda: counts[0], every=5.0, clock=lambda: 0.0)
    caplog.set_level(logging.INFO, "charpente.worker")
    log.report()
    assert caplog.messages == []  # nothing since the start
    counts[0] = Activity(relayed=12, jobs_done=2, jobs_failed=1)
    log.report()
    log.report()
    assert caplog.messages == [
        "worker: relayed 7 events, 0 webhook deliveries (none failed), 3 jobs (1 failed) "
        "in the last 5 s"
    ]


@pytest.mark.anyio
async def test_the_worker_says_what_it_did_when_it_stops(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, anyio_backend: str
) -> None:
    settings = Settings(database_url=f"sqlite+aiosqlite:///{tmp_path / 'w.db'}")
    design = load_design_text(DESIGN)
    await apply_database_migration(settings, design)
    engine = create_engine(settings.database_url)
    database = SqlDatabase(engine, design)
    service = Service(design, database)
    for n in range(3):
        await service.create("posts", {"title": f"t{n}"}, caller=SYSTEM)
    await database.close()

    caplog.set_level(logging.INFO, "charpente")
    stop = asyncio.Event()
    worker = asyncio.create_task(run_worker(settings, design, stop))
    for _ in range(200):
        await asyncio.sleep(0.05)
        if any("relaying" in m for m in caplog.messages):
            break
    await asyncio.sleep(0.5)
    stop.set()
    await asyncio.wait_for(worker, 20)
    [summary] = [m for m in caplog.messages if m.startswith("worker stopped")]
    assert "relayed 3 events" in summary
    assert summary.endswith("; 0 events waiting in the outbox")
