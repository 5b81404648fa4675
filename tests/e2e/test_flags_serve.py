"""Two served apps, wired as `charpente serve` wires them, on one PostgreSQL schema and one
Redis stream: an admin's change on one takes effect on the other within a second."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis
from tests.changes.conftest import REDIS_URL
from tests.changes.support import serve, stop
from tests.conftest import service_missing

from charpente.loader import load_design_text
from charpente.settings import Settings
from charpente.wiring import apply_database_migration, build_application

pytestmark = pytest.mark.anyio

DESIGN = """
charpente: 1
name: feed
flags:
  reposts: {rollout: 0%}
resources:
  posts:
    fields: {body: text}
    access: {read: flag("reposts"), create: true}
"""


async def _redis_or_skip() -> None:
    client = Redis.from_url(REDIS_URL)
    try:
        async with asyncio.timeout(5):
            await client.ping()
    except Exception as exc:  # any failure to connect: no server here
        service_missing("Redis", f"{type(exc).__name__}: {exc}")
    finally:
        await client.aclose()


async def test_a_change_on_one_server_takes_effect_on_the_other(pg_target: Any) -> None:
    await _redis_or_skip()
    stream = f"charpente:test:{uuid.uuid4().hex[:12]}:events"
    settings = Settings(
        database_url=pg_target.url,
        database_schema=pg_target.schema,
        bus_url=f"{REDIS_URL}?stream={stream}",
        worker="separate",
    )
    design = load_design_text(DESIGN)
    await apply_database_migration(settings, design)
    one, other = build_application(settings, design), build_application(settings, design)
    served = [await serve(one), await serve(other)]
    try:
        token = await _admin_token(one)
        async with httpx.AsyncClient() as client:
            assert (await client.get(f"{served[1][2]}/v1/posts")).status_code == 401
            started = time.monotonic()
            changed = await client.patch(
                f"{served[0][2]}/v1/_flags/reposts",
                json={"rollout": 100},
                headers={"Authorization": f"Bearer {token}"},
            )
            assert changed.status_code == 200, changed.text
            while (await client.get(f"{served[1][2]}/v1/posts")).status_code != 200:
                assert time.monotonic() - started < 1.0, "the other server did not follow"
                await asyncio.sleep(0.02)
    finally:
        for server, task, _ in served:
            await stop(server, task)


async def _admin_token(app: Any) -> str:
    accounts = app.state.accounts
    await accounts.create_account("root@example.com", "admin", "a long enough password", {})
    pair = await accounts.token(
        {"grant_type": "password", "username": "root@example.com",
         "password": "a long enough password"}
    )  # fmt: skip
    return str(pair.access_token)
