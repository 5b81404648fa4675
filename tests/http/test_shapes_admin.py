"""The shape log end to end: reads counted through the Database port, merged across
processes in charpente_query_shapes, shown by `GET /v1/_admin/shapes` to admins only."""

from __future__ import annotations

import datetime
from typing import Any

import httpx
import pytest

from charpente.http.app import build_app
from charpente.http.shapes import shape_routes
from charpente.runtime.service import Service
from charpente.runtime.shapes import MeasuredDatabase, ShapeFlusher, ShapeLog, ShapeReport
from charpente.sql.database import SqlDatabase
from charpente.sql.shapestore import SqlShapeStore

pytestmark = pytest.mark.anyio

DESIGN = """
charpente: 1
name: shapes
resources:
  posts:
    access: {read: true, create: true}
    fields:
      author: {type: string, required: true}
      visibility: {enum: [public, friends], required: true}
"""
NOW = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)


class _Clock:
    def now(self) -> datetime.datetime:
        return NOW


async def _app(api: Any) -> tuple[httpx.AsyncClient, ShapeLog, SqlShapeStore]:
    database = SqlDatabase(api.engine, api.design)
    log = ShapeLog()
    store = SqlShapeStore(database)
    flusher = ShapeFlusher(log, store, 3600, _Clock())
    service = Service(api.design, MeasuredDatabase(database, log))
    app = build_app(
        service,
        api.design,
        accounts=api.accounts,
        extra_routes=shape_routes(ShapeReport(store, flusher), "/v1"),
    )
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    return httpx.AsyncClient(transport=transport, base_url="http://test"), log, store


async def test_admins_see_each_shape_once_with_its_calls_and_no_values(make_api: Any) -> None:
    api = await make_api(DESIGN)
    client, _log, _store = await _app(api)
    admin = await api.sign_in("root@example.com", role="admin")
    for author in ("ada", "bob", "eve"):
        await api.create("posts", {"author": author, "visibility": "public"})
        found = await client.get(
            "/v1/posts", params={"filter": f'author == "{author}"', "sort": "-created_at"}
        )
        assert found.status_code == 200
    response = await client.get("/v1/_admin/shapes", headers=admin)
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    shapes = {s["shape"]: s for s in response.json()["data"]}
    page = shapes["list posts where author == ? sort -created_at,-id"]
    assert page["calls"] == 3
    assert page["rows"] == 3
    assert page["p99_ms"] >= page["p50_ms"] > 0
    assert page["spec"]["where"] == ["cmp", "==", ["name", "author"], ["value"]]
    assert "ada" not in response.text
    assert "bob" not in response.text
    await client.aclose()


async def test_anonymous_callers_get_401_members_403_and_bad_parameters_400(
    make_api: Any,
) -> None:
    api = await make_api(DESIGN)
    client, _log, _store = await _app(api)
    member = await api.sign_in("ada@example.com", role="member")
    admin = await api.sign_in("root@example.com", role="admin")
    assert (await client.get("/v1/_admin/shapes")).status_code == 401
    assert (await client.get("/v1/_admin/shapes", headers=member)).status_code == 403
    for query in ("order=fastest", "limit=0", "limit=x", "limit=201", "other=1"):
        response = await client.get(f"/v1/_admin/shapes?{query}", headers=admin)
        assert response.status_code == 400, query
        assert response.headers["content-type"] == "application/problem+json"
    await client.aclose()


async def test_two_processes_counts_add_up_in_the_table(make_api: Any) -> None:
    api = await make_api(DESIGN)
    await api.create("posts", {"author": "ada", "visibility": "public"})
    first, first_log, store = await _app(api)
    second, second_log, _ = await _app(api)
    for client in (first, second, second):
        assert (await client.get("/v1/posts", params={"filter": 'author == "ada"'})).is_success
    flushers = [ShapeFlusher(log, store, 3600, _Clock()) for log in (first_log, second_log)]
    for flusher in flushers:
        await flusher.flush()
    [top] = [s for s in await store.top("total", 10) if s.kind == "list"]
    assert top.calls == 3
    assert sum(top.histogram) == 3
    assert top.max_us * 3 >= top.total_us
    slowest = await store.top("slowest", 1)
    assert len(slowest) == 1
    for client in (first, second):
        await client.aclose()
