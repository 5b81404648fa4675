"""`/metrics`: admins only on the API's port, OpenTelemetry's names, route templates as labels,
bounded cardinality, statements named by the engine, live streams apart."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from starlette.types import Receive, Scope, Send

from charpente.http.observe import UNMATCHED, ObservabilityMiddleware, RouteNames
from charpente.runtime import metrics

Series = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape() -> Series:
    """Every sample of this process's metrics: (name, labels) -> value."""
    found: Series = {}
    for family in text_string_to_metric_families(metrics.exposition().decode()):
        for sample in family.samples:
            found[sample.name, frozenset(sample.labels.items())] = sample.value
    return found


def samples(series: Series, name: str, **labels: str) -> list[float]:
    wanted = set(labels.items())
    return [v for (n, found), v in series.items() if n == name and wanted <= found]


def label_sets(series: Series, name: str) -> set[frozenset[tuple[str, str]]]:
    return {labels for n, labels in series if n == name}


async def admin_headers(api: Any) -> dict[str, str]:
    return await api.sign_in("root@example.com", role="admin")


async def test_metrics_on_the_api_port_need_an_admin(api: Any) -> None:
    assert (await api.client.get("/metrics")).status_code == 401
    member = await api.sign_in("ada@example.com")
    refused = await api.client.get("/metrics", headers=member)
    assert refused.status_code == 403
    assert refused.headers["content-type"] == "application/problem+json"
    answered = await api.client.get("/metrics", headers=await admin_headers(api))
    assert answered.status_code == 200
    assert answered.headers["content-type"].startswith("text/plain; version=0.0.4")
    assert "# TYPE http_server_request_duration_seconds histogram" in answered.text


async def test_requests_are_named_by_their_route_template(api: Any) -> None:
    user = await api.create("users", {"handle": "ada"})
    before = scrape()
    assert (await api.client.get(f"/v1/users/{user['id']}")).status_code == 200
    assert (await api.client.get("/v1/users/not-a-known-id")).status_code == 404
    assert (await api.client.get("/nowhere/at/all")).status_code == 404
    after = scrape()
    count = "http_server_request_duration_seconds_count"

    def added(**labels: str) -> float:
        return sum(samples(after, count, **labels)) - sum(samples(before, count, **labels))

    item = {"http_request_method": "GET", "http_route": "/v1/users/{id}"}
    assert added(**item, http_response_status_code="200", error_type="") == 1
    assert added(**item, http_response_status_code="404", error_type="") == 1
    assert added(http_route=UNMATCHED, http_response_status_code="404") == 1
    assert not any(user["id"] in str(labels) for _, labels in after)


async def test_statements_are_named_by_the_engine_not_by_their_text(api: Any) -> None:
    before = scrape()
    await api.create("users", {"handle": "grace"})
    after = scrape()
    name = "db_client_operation_duration_seconds_count"
    system = "sqlite" if api.dialect == "sqlite" else "postgresql"
    labels = {"db_system_name": system, "db_operation_name": "INSERT"}
    inserted = samples(after, name, **labels, db_collection_name="users")
    assert sum(inserted) - sum(samples(before, name, **labels, db_collection_name="users")) >= 1
    used = samples(after, "db_client_connections_usage", state="used")
    assert used
    assert used[0] >= 0
    assert samples(after, "db_client_connection_wait_time_seconds_count")


@pytest.mark.parametrize("db_target", ["sqlite"], indirect=True)
async def test_series_stay_bounded_by_routes_methods_and_statuses(api: Any) -> None:
    """10,000 distinct ids and 500 unknown paths add no series beyond route x method x
    status; no id or path is ever a label value."""
    before = label_sets(scrape(), "http_server_request_duration_seconds_count")

    async def get(path: str) -> int:
        return (await api.client.get(path)).status_code

    statuses: set[tuple[str, int]] = set()
    for start in range(0, 10_000, 500):
        paths = [f"/v1/posts/id-{n}" for n in range(start, start + 500)]
        statuses |= {("/v1/posts/{id}", s) for s in await asyncio.gather(*map(get, paths))}
    unknown = [f"/unknown-{n}/x" for n in range(500)]
    statuses |= {(UNMATCHED, s) for s in await asyncio.gather(*map(get, unknown))}
    series = scrape()
    added = label_sets(series, "http_server_request_duration_seconds_count") - before
    assert len(added) <= len(statuses)
    routes = {dict(labels)["http_route"] for labels in added}
    assert routes <= {"/v1/posts/{id}", UNMATCHED}
    every_value = {value for _, labels in series for _, value in labels}
    assert not any(value.startswith(("id-", "/unknown-")) for value in every_value)


class _Stream:
    """An ASGI app that answers a short event stream."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = [(b"content-type", b"text/event-stream; charset=utf-8")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        assert metrics.LIVE_STREAMS._value.get() >= 1  # type: ignore[attr-defined]
        await send({"type": "http.response.body", "body": b"data: 1\n\n"})


class _NoRoutes:
    routes: list[object] = []


@pytest.mark.anyio
async def test_live_streams_stay_out_of_the_request_histogram() -> None:
    names = RouteNames(_NoRoutes(), "/v1/", {"posts": {}}, {"posts": {}})  # type: ignore[arg-type]
    app = ObservabilityMiddleware(_Stream(), routes=names)
    before = scrape()
    sent: list[object] = []

    async def receive() -> dict[str, object]:
        return {"type": "http.disconnect"}

    async def send(message: object) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "GET", "path": "/v1/posts", "headers": []}
    await app(scope, receive, send)  # type: ignore[arg-type]
    after = scrape()
    count = "http_server_request_duration_seconds_count"
    assert samples(after, count, http_route="/v1/posts") == samples(
        before, count, http_route="/v1/posts"
    )
    streams = "charpente_live_stream_duration_seconds_count"
    assert sum(samples(after, streams)) == sum(samples(before, streams)) + 1
    assert samples(after, "charpente_live_streams_open") == samples(
        before, "charpente_live_streams_open"
    )


LIMITED = """
charpente: 1
name: limited
api_version: 1
limits: {all: "2/minute per ip"}
resources:
  notes:
    access: {read: true}
    fields:
      text: {type: string}
"""


async def test_rate_limit_refusals_are_counted_by_limit_name(make_api: Any) -> None:
    from charpente.runtime.ratelimit import MemoryLimiter

    api = await make_api(LIMITED, limiter=MemoryLimiter())
    before = sum(samples(scrape(), "charpente_rate_limit_refusals_total", limit="all"))
    statuses = [(await api.client.get("/v1/notes")).status_code for _ in range(4)]
    assert statuses == [200, 200, 429, 429]
    after = sum(samples(scrape(), "charpente_rate_limit_refusals_total", limit="all"))
    assert after == before + 2


@pytest.fixture
def metrics_off() -> Any:
    """This process with CHARPENTE_METRICS=false (what wiring sets before building the app)."""
    metrics.record(False)
    try:
        yield
    finally:
        metrics.record(True)


async def test_with_metrics_off_requests_record_nothing_and_no_metrics_are_served(
    metrics_off: None, make_api: Any
) -> None:
    api = await make_api()
    user = await api.create("users", {"handle": "ada"})
    before = scrape()
    assert (await api.client.get(f"/v1/users/{user['id']}")).status_code == 200
    after = scrape()
    for name in (
        "http_server_request_duration_seconds_count",
        "db_client_operation_duration_seconds_count",
    ):
        assert sum(samples(after, name)) == sum(samples(before, name)), name
    answered = await api.client.get("/metrics", headers=await admin_headers(api))
    assert answered.status_code == 404
