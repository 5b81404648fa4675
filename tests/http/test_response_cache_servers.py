"""The response cache as `serve` wires it: in process by default, in Redis with
CHARPENTE_REDIS_URL (two servers share it: a write on one is seen at once on the other),
and with Redis unreachable no request fails and /readyz says `degraded`."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from tests.conftest import service_missing

from charpente.loader import load_design_text
from charpente.settings import Settings
from charpente.wiring import apply_database_migration, build_application

pytestmark = pytest.mark.anyio

REDIS_URL = "redis://127.0.0.1:6379/0"
DESIGN = """
charpente: 1
name: {name}
cache: {{ttl: 60s}}
resources:
  tags:
    access: {{read: true, create: true, update: true}}
    fields:
      name: {{type: string}}
"""


@asynccontextmanager
async def serving(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """A client of a started app; the app's readiness report is `client.ready()`."""
    app = build_application(settings)
    inbox: asyncio.Queue[Any] = asyncio.Queue()
    sent: asyncio.Queue[Any] = asyncio.Queue()
    task = asyncio.create_task(app({"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}},
                                   inbox.get, sent.put))  # fmt: skip
    await inbox.put({"type": "lifespan.startup"})
    assert (await sent.get())["type"] == "lifespan.startup.complete"
    transport = httpx.ASGITransport(app=app)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            client.ready = app.state.health.readiness  # type: ignore[attr-defined]
            yield client
    finally:
        await inbox.put({"type": "lifespan.shutdown"})
        await sent.get()
        await task


async def _settings(tmp_path: Path, redis_url: str | None) -> Settings:
    name = f"c{uuid.uuid4().hex[:8]}"
    path = tmp_path / "design.yaml"
    path.write_text(DESIGN.format(name=name), encoding="utf-8")
    url = f"sqlite+aiosqlite:///{tmp_path / 'app.db'}"
    settings = Settings(database_url=url, design_path=path, redis_url=redis_url)
    await apply_database_migration(settings, load_design_text(path.read_text(), str(path)))
    return settings


async def test_two_servers_sharing_redis_never_answer_an_older_version(tmp_path: Path) -> None:
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1)
    try:
        client.ping()
    except redis.RedisError as exc:
        service_missing("Redis", str(exc))
    finally:
        client.close()
    settings = await _settings(tmp_path, REDIS_URL)
    async with serving(settings) as writer, serving(settings) as reader:
        created = (await writer.post("/v1/tags", json={"name": "v0"})).json()
        path = f"/v1/tags/{created['id']}"
        for version in range(1, 30):
            assert (await reader.get(path)).status_code == 200  # cached on the reader
            changed = await writer.patch(path, json={"name": f"v{version}"})
            assert changed.status_code == 200
            seen = await reader.get(path)
            assert seen.json()["name"] == f"v{version}"
            assert seen.headers["etag"] == f'"{version + 1}"'
        assert (await reader.get("/readyz")).status_code == 200
        assert (await reader.ready()).details()["cache"]["status"] == "ok"


async def test_with_redis_unreachable_requests_succeed_and_readyz_is_degraded(
    tmp_path: Path,
) -> None:
    settings = await _settings(tmp_path, "redis://127.0.0.1:1/0")
    async with serving(settings) as client:
        assert (await client.post("/v1/tags", json={"name": "a"})).status_code == 201
        for _ in range(2):
            assert (await client.get("/v1/tags")).status_code == 200
        assert (await client.get("/readyz")).status_code == 200  # a cache never makes it unready
        cache = (await client.ready()).details()["cache"]
        assert cache["status"] == "degraded"
        assert cache["bypassed"] >= 3


async def test_in_process_by_default(tmp_path: Path) -> None:
    settings = await _settings(tmp_path, None)
    async with serving(settings) as client:
        assert (await client.post("/v1/tags", json={"name": "a"})).status_code == 201
        first = await client.get("/v1/tags")
        assert first.headers["cache-control"] == "public, max-age=60"
        assert (await client.ready()).details()["cache"] == {"status": "ok", "bypassed": 0}
