"""docs/jobs.md: its example module is the one tested here, and it does what the page says."""

from __future__ import annotations

import datetime
import re
import sys
from pathlib import Path
from typing import Any

import pytest
from job_queues import MakeQueue, now

from charpente.runtime.hooks import load_hooks
from charpente.runtime.jobs import JobContext

EXAMPLE = Path(__file__).parent / "jobs_example.py"
DOC = Path(__file__).parents[2] / "docs" / "jobs.md"

pytestmark = pytest.mark.anyio


@pytest.fixture
def example() -> Any:
    load_hooks(str(EXAMPLE))
    return sys.modules["charpente_hooks_jobs_example"]


def test_the_doc_shows_the_example_module_as_it_is() -> None:
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(encoding="utf-8"), re.DOTALL)
    assert EXAMPLE.read_text(encoding="utf-8") in blocks


async def test_the_example_welcomes_new_users_and_says_farewell_a_day_later(
    make_queue: MakeQueue, example: Any
) -> None:
    queue = await make_queue(example.hooks)
    runner = queue.runner()
    created = await queue.service.create("users", {"handle": "ada"})
    assert created.item is not None
    assert await runner.run_due() == 1
    assert list(example.sent.values()) == ["welcome, ada"]

    user_id = str(created.item.record["id"])
    await queue.service.update("users", user_id, {"handle": "gone-ada"})
    assert await runner.run_due() == 0  # a day later
    assert await runner.run_due(now() + datetime.timedelta(days=1, seconds=1)) == 1
    assert list(example.sent.values()) == ["welcome, ada", "farewell, gone-ada"]


async def test_the_example_s_jobs_send_once_however_often_they_run(example: Any) -> None:
    async def nothing(*args: Any) -> Any:
        return None

    ctx = JobContext("0190c1d2-0000-7000-8000-000000000001", "send_welcome", 2, 6, nothing, nothing)
    await example.send_welcome(ctx, {"handle": "ada"})
    await example.send_welcome(ctx, {"handle": "ada"})
    assert list(example.sent.values()) == ["welcome, ada"]
