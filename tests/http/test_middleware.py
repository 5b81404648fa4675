"""The edge around every route: request ids, security headers, access log, docs, 500s."""

from __future__ import annotations

import json
import logging
import uuid

import pytest
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

SECURITY = {
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
    "cross-origin-opener-policy": "same-origin",
}


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("method", "url", "status"),
    [
        ("GET", "/v1/users", 200),
        ("GET", "/healthz", 200),
        ("GET", "/v1/nothing", 404),
        ("DELETE", "/v1/users", 405),
        ("POST", "/v1/users", 415),
    ],
)
async def test_every_response_carries_a_request_id_and_the_security_headers(
    api, method: str, url: str, status: int
) -> None:
    response = await api.client.request(method, url)
    assert response.status_code == status
    assert uuid.UUID(response.headers["x-request-id"]).version == 7
    for name, value in SECURITY.items():
        assert response.headers[name] == value
    assert (
        response.headers["content-security-policy"] == "default-src 'none'; frame-ancestors 'none'"
    )
    assert "strict-transport-security" not in response.headers


@pytest.mark.anyio
async def test_a_sane_client_request_id_is_echoed(api) -> None:
    response = await api.client.get("/healthz", headers={"X-Request-ID": "abc-123_X.9"})
    assert response.headers["x-request-id"] == "abc-123_X.9"


@pytest.mark.anyio
@pytest.mark.parametrize("sent", ["a" * 129, "has space", "semi;colon", "é"])
async def test_an_odd_client_request_id_is_replaced(api, sent: str) -> None:
    response = await api.client.get("/healthz", headers={"X-Request-ID": sent.encode()})
    assert response.headers["x-request-id"] != sent
    assert uuid.UUID(response.headers["x-request-id"])


@pytest.mark.anyio
async def test_https_responses_carry_strict_transport_security(make_api) -> None:
    api = await make_api(base_url="https://test")
    response = await api.client.get("/healthz")
    assert response.headers["strict-transport-security"].startswith("max-age=")


@pytest.mark.anyio
async def test_one_access_log_line_without_the_query_string(api, caplog) -> None:
    caplog.set_level(logging.INFO, logger="charpente.access")
    response = await api.client.get("/v1/users?filter=handle%20%3D%3D%20%22secret-value%22")
    lines = [r.getMessage() for r in caplog.records if r.name == "charpente.access"]
    assert len(lines) == 1
    line = json.loads(lines[0])
    assert line["method"] == "GET"
    assert line["path"] == "/v1/users"
    assert line["status"] == 200
    assert line["request_id"] == response.headers["x-request-id"]
    assert isinstance(line["duration_ms"], float)
    assert "secret-value" not in lines[0]


@pytest.mark.anyio
async def test_a_bug_in_a_route_is_a_generic_500_with_the_request_id(make_api, caplog) -> None:
    api = await make_api()

    async def broken(request: Request) -> Response:
        raise ZeroDivisionError("internal detail 42")

    api.client._transport.app.router.routes.append(Route("/broken", broken))  # type: ignore[attr-defined]
    response = await api.client.get("/broken")
    assert response.status_code == 500
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["type"] == "/problems/internal"
    assert problem["request_id"] == response.headers["x-request-id"]
    assert "internal detail" not in response.text
    assert "ZeroDivisionError" not in response.text
    assert response.headers["x-content-type-options"] == "nosniff"
    logged = [r for r in caplog.records if r.name == "charpente.errors"]
    assert logged[0].exc_info is not None
    assert problem["request_id"] in logged[0].getMessage()


@pytest.mark.anyio
async def test_openapi_and_docs_are_served(api) -> None:
    spec = await api.client.get("/openapi.json")
    assert spec.status_code == 200
    assert spec.json()["openapi"].startswith("3.1")
    docs = await api.client.get("/docs")
    assert docs.status_code == 200
    assert "script-src 'self'" in docs.headers["content-security-policy"]
    assert docs.headers.get_list("x-content-type-options") == ["nosniff"]


@pytest.mark.anyio
async def test_a_head_request_answers_like_get_without_a_body(api) -> None:
    user = await api.create("users", {"handle": "ada"})
    response = await api.client.head(f"/v1/users/{user['id']}")
    assert response.status_code == 200
    assert response.headers["etag"] == '"1"'
