"""The REST fast path answers byte for byte what the Starlette stack behind it answers.

Each request goes once through the app (the dispatcher) and once straight to the Starlette
stack it falls back to; status, headers (in order) and body must be identical.
"""

from __future__ import annotations

import copy
import logging
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from api_scenarios import seed
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from charpente.http.app import CharpenteApp
from charpente.http.dispatch import RestDispatcher

RID = {"X-Request-ID": "same-id-1"}
JSON_TYPE = {"Content-Type": "application/json"}

SAME_ANSWER = [
    ("GET", "/v1/users", {}, None),
    ("GET", "/v1/users?limit=1", {}, None),
    ("GET", "/v1/posts?expand=author&fields=title,author", {}, None),
    ("GET", "/v1/users/{user}", {}, None),
    ("HEAD", "/v1/users/{user}", {}, None),
    ("GET", "/v1/users/{user}", {"If-None-Match": 'W/"1"'}, None),
    ("GET", "/v1/users/{missing}", {}, None),
    ("GET", "/v1/users/not-an-id", {}, None),
    ("GET", "/v1/users?colour=red", {}, None),
    ("GET", "/v1/users?filter=%zz", {}, None),
    ("GET", "/v1/users", {"Accept": "text/html"}, None),
    ("GET", "/v1/users/", {}, None),
    ("GET", "/v1/nothing", {}, None),
    ("GET", "/v1/users/{user}/more", {}, None),
    ("DELETE", "/v1/users", {}, None),
    ("POST", "/v1/users/{user}", {}, None),
    ("POST", "/v1/users", {}, b'{"handle": "x"}'),
    ("POST", "/v1/users", JSON_TYPE, b'{"handle": '),
    ("POST", "/v1/users", {**JSON_TYPE, "Idempotency-Key": "a\tb"}, b'{"handle": "bob"}'),
    ("POST", "/v1/users", {**JSON_TYPE, "Content-Length": "abc"}, b""),
    ("POST", "/v1/users", {**JSON_TYPE, "Content-Length": "999999999"}, b""),
    ("POST", "/v1/users", JSON_TYPE, b'{"handle": "taken"}'),
    ("POST", "/v1/users", JSON_TYPE, b'{"handle": 5}'),
    ("PATCH", "/v1/users/{user}", {**JSON_TYPE, "If-Match": "1"}, b'{"handle": "x"}'),
    ("PATCH", "/v1/users/{user}", {**JSON_TYPE, "If-Match": '"99"'}, b'{"handle": "x"}'),
    ("PATCH", "/v1/users/{user}", {"Content-Type": "text/plain"}, b"x"),
    ("PATCH", "/v1/users/{missing}", JSON_TYPE, b'{"handle": "x"}'),
    ("DELETE", "/v1/notes/{note}", {}, None),
    ("DELETE", "/v1/users/{missing}", {}, None),
]


def starlette_only(app: CharpenteApp) -> ASGIApp:
    """The stack the dispatcher falls back to, behind the same edge middleware (request id,
    authentication), called as Starlette would call it."""
    stack = app.build_middleware_stack()
    layers = []
    while not isinstance(stack, RestDispatcher):
        layers.append(copy.copy(stack))
        stack = stack.app  # type: ignore[attr-defined]
    inner: ASGIApp = stack.fallback
    for layer in reversed(layers):
        layer.app = inner  # type: ignore[attr-defined]
        inner = layer

    async def reference(scope: Scope, receive: Receive, send: Send) -> None:
        scope["app"] = app
        await inner(scope, receive, send)

    return reference


@pytest.fixture
async def twin(api: Any) -> AsyncIterator[httpx.AsyncClient]:
    """A client of the same app's Starlette stack, without the fast path."""
    transport = httpx.ASGITransport(app=starlette_only(app_of(api)), raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        yield client


def app_of(api: Any) -> CharpenteApp:
    app = api.client._transport.app
    assert isinstance(app, CharpenteApp)
    return app


def answer(response: httpx.Response) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    return response.status_code, list(response.headers.raw), response.content


async def both(api: Any, twin: httpx.AsyncClient, method: str, url: str, **kwargs: Any) -> Any:
    fast = await api.client.request(method, url, **kwargs)
    slow = await twin.request(method, url, **kwargs)
    return fast, slow


@pytest.mark.anyio
async def test_every_answer_is_the_same_as_starlettes(api: Any, twin: httpx.AsyncClient) -> None:
    ids = await seed(api)
    await api.create("users", {"handle": "taken"})
    for method, url, headers, content in SAME_ANSWER:
        for name, id in ids.items():
            url = url.replace("{" + name + "}", id)
        fast, slow = await both(api, twin, method, url, headers={**RID, **headers}, content=content)
        assert answer(fast) == answer(slow), (method, url)


@pytest.mark.anyio
async def test_the_list_link_is_the_same_as_starlettes(api: Any, twin: httpx.AsyncClient) -> None:
    for handle in ("a", "b", "c"):
        await api.create("users", {"handle": handle})
    fast, slow = await both(api, twin, "GET", "/v1/users?limit=2&sort=handle", headers=RID)
    assert fast.headers["link"].startswith("</v1/users?limit=2&sort=handle&cursor=")
    assert answer(fast) == answer(slow)


@pytest.mark.anyio
async def test_a_body_growing_past_the_limit_is_the_same_413(make_api: Any) -> None:
    api = await make_api(max_body_bytes=64)
    transport = httpx.ASGITransport(app=starlette_only(app_of(api)), raise_app_exceptions=False)

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(10):
            yield b'{"handle": "aaaaaaaaaaaaaaaaaaaa"}'

    async with httpx.AsyncClient(transport=transport, base_url="http://test") as twin:
        fast, slow = await both(
            api, twin, "POST", "/v1/users", headers={**RID, **JSON_TYPE}, content=chunks()
        )
    assert fast.status_code == 413
    assert answer(fast) == answer(slow)


@pytest.mark.anyio
async def test_writes_answer_the_same_shape_as_starlettes(
    api: Any, twin: httpx.AsyncClient
) -> None:
    made = []
    for client, handle in ((api.client, "fast"), (twin, "slow")):
        created = await client.post("/v1/users", json={"handle": handle}, headers=RID)
        url = created.headers["location"]
        patched = await client.patch(url, json={"handle": handle + "2"}, headers=RID)
        again = await client.post(
            "/v1/users", json={"handle": handle + "3"}, headers={**RID, "Idempotency-Key": handle}
        )
        replayed = await client.post(
            "/v1/users", json={"handle": handle + "3"}, headers={**RID, "Idempotency-Key": handle}
        )
        deleted = await client.delete(url, headers=RID)
        made.append([shape(r) for r in (created, patched, again, replayed, deleted)])
    assert made[0] == made[1]
    assert made[0][3][0] == 201
    assert ("idempotent-replayed", "true") in made[0][3][1]


def shape(response: httpx.Response) -> tuple[int, list[tuple[str, str]], list[str]]:
    """Status, headers (values of the varying ones blanked) and the body's keys."""
    varying = {"location", "content-length", "x-request-id"}
    headers = [(k, "" if k in varying else v) for k, v in response.headers.items()]
    body = sorted(response.json()) if response.content else []
    return response.status_code, headers, body


@pytest.mark.anyio
async def test_an_https_answer_carries_the_same_headers(make_api: Any) -> None:
    api = await make_api(base_url="https://test")
    transport = httpx.ASGITransport(app=starlette_only(app_of(api)), raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="https://test") as twin:
        fast, slow = await both(api, twin, "GET", "/v1/users", headers=RID)
    assert fast.headers["strict-transport-security"].startswith("max-age=")
    assert answer(fast) == answer(slow)


@pytest.mark.anyio
async def test_the_access_log_line_is_the_same_as_starlettes(
    api: Any, twin: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="charpente.access")
    await both(api, twin, "GET", "/v1/users/not-an-id", headers=RID)
    lines = [r.getMessage() for r in caplog.records if r.name == "charpente.access"]
    assert len(lines) == 2
    assert [line.partition('"duration_ms"')[0] for line in lines] == [
        '{"method":"GET","path":"/v1/users/not-an-id","status":404,'
    ] * 2


@pytest.mark.anyio
async def test_the_generated_routes_are_served_without_the_router(api: Any) -> None:
    router = app_of(api).router
    router.routes[:] = [r for r in router.routes if "/v1/" not in getattr(r, "path", "")]
    assert (await api.client.get("/v1/users")).status_code == 200
    assert (await api.client.delete("/v1/users")).status_code == 404  # left to Starlette


@pytest.mark.anyio
async def test_other_routes_under_a_resource_fall_through_to_starlette(api: Any) -> None:
    async def badge(request: Request) -> Response:
        return Response(request.path_params["id"], media_type="text/plain")

    async def stats(request: Request) -> Response:
        return Response("stats", media_type="text/plain")

    app_of(api).router.routes.append(Route("/v1/users/{id}/badge", badge))
    app_of(api).router.routes.append(Route("/v1/users/{id}", stats, methods=["POST"]))
    badge_answer = await api.client.get("/v1/users/abc/badge")
    assert (badge_answer.status_code, badge_answer.text) == (200, "abc")
    assert badge_answer.headers["x-content-type-options"] == "nosniff"
    assert (await api.client.post("/v1/users/abc")).text == "stats"


@pytest.mark.anyio
async def test_middleware_added_later_wraps_the_fast_path_too(make_api: Any) -> None:
    api = await make_api()
    app = app_of(api)
    app.middleware_stack = None

    class Stamp:
        def __init__(self, inner: ASGIApp) -> None:
            self.inner = inner

        async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
            async def stamped(message: Message) -> None:
                if message["type"] == "http.response.start":
                    message["headers"] = [*message["headers"], (b"x-stamp", b"1")]
                await send(message)

            await self.inner(scope, receive, stamped)

    app.add_middleware(Stamp)
    assert (await api.client.get("/v1/users")).headers["x-stamp"] == "1"
    assert (await api.client.get("/healthz")).headers["x-stamp"] == "1"


@pytest.mark.anyio
async def test_behind_a_root_path_the_routes_still_answer(api: Any) -> None:
    transport = httpx.ASGITransport(app=app_of(api), root_path="/api")
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        response = await client.get("/api/v1/users")
    assert response.status_code == 200
    assert response.json()["data"] == []


@pytest.mark.anyio
async def test_a_bug_under_a_generated_route_is_a_generic_500(
    api: Any, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken(*args: Any, **kwargs: Any) -> Any:
        raise ZeroDivisionError("internal detail 42")

    monkeypatch.setattr(api.service, "list", broken)
    response = await api.client.get("/v1/users")
    assert response.status_code == 500
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["type"] == "/problems/internal"
    assert problem["request_id"] == response.headers["x-request-id"]
    assert "internal detail" not in response.text
    assert response.headers["referrer-policy"] == "no-referrer"
    logged = [r for r in caplog.records if r.name == "charpente.errors"]
    assert logged[0].exc_info is not None
    assert problem["request_id"] in logged[0].getMessage()


@pytest.mark.anyio
async def test_an_http_exception_from_below_is_rendered_as_starlette_does(
    api: Any, twin: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def forbidden(*args: Any, **kwargs: Any) -> Any:
        raise HTTPException(403, headers={"X-Reason": "policy"})

    monkeypatch.setattr(api.service, "get", forbidden)
    fast, slow = await both(api, twin, "GET", f"/v1/users/{uuid.uuid4()}", headers=RID)
    assert fast.status_code == 403
    assert fast.headers["x-reason"] == "policy"
    assert answer(fast) == answer(slow)
