"""Every row of the contract's status table, as problem+json, on every dialect."""

from __future__ import annotations

import pytest
from api_scenarios import Scenario, run, seed

ERRORS = [
    Scenario(
        "malformed JSON is a 400",
        "POST",
        "/v1/users",
        400,
        content=b'{"handle": ',
        headers={"Content-Type": "application/json"},
        problem="bad-request",
    ),
    Scenario(
        "a body that is not UTF-8 is a 400",
        "POST",
        "/v1/users",
        400,
        content=b'{"handle": "\xff\xfe"}',
        headers={"Content-Type": "application/json"},
        problem="bad-request",
    ),
    Scenario(
        "a filter syntax error is a 400 with its position",
        "GET",
        "/v1/posts?filter=title%20%3D%3D",
        400,
        problem="bad-request",
        detail_contains="at character",
    ),
    Scenario(
        "an unknown query parameter is a 400",
        "GET",
        "/v1/posts?colour=red",
        400,
        problem="bad-request",
        detail_contains="colour",
    ),
    Scenario(
        "an invalid percent-encoding is a 400",
        "GET",
        "/v1/posts?filter=%zz",
        400,
        problem="bad-request",
    ),
    Scenario(
        "an over-long query string is a 400",
        "GET",
        "/v1/posts?filter=" + "a" * 9000,
        400,
        problem="bad-request",
    ),
    Scenario(
        "a malformed If-Match is a 400",
        "PATCH",
        "/v1/posts/{post}",
        400,
        json={"title": "x"},
        headers={"If-Match": "1"},
        problem="bad-request",
    ),
    Scenario(
        "an Idempotency-Key with control characters is a 400",
        "POST",
        "/v1/users",
        400,
        json={"handle": "bob"},
        headers={"Idempotency-Key": "a\tb"},
        problem="bad-request",
    ),
    Scenario("an unknown id is a 404", "GET", "/v1/posts/{missing}", 404, problem="not-found"),
    Scenario(
        "an id that is not a UUID is a 404", "GET", "/v1/posts/not-an-id", 404, problem="not-found"
    ),
    Scenario(
        "patching an unknown id is a 404",
        "PATCH",
        "/v1/posts/{missing}",
        404,
        json={"title": "x"},
        problem="not-found",
    ),
    Scenario(
        "deleting an unknown id is a 404", "DELETE", "/v1/users/{missing}", 404, problem="not-found"
    ),
    Scenario("an unknown resource is a 404", "GET", "/v1/widgets", 404, problem="not-found"),
    Scenario("an unknown path is a 404", "GET", "/v2/posts", 404, problem="not-found"),
    Scenario(
        "a wrong method is a 405 with Allow",
        "PUT",
        "/v1/posts",
        405,
        problem="method-not-allowed",
        response_headers={"allow": "GET, HEAD, POST"},
    ),
    Scenario(
        "a wrong method on an item is a 405 with Allow",
        "POST",
        "/v1/posts/{post}",
        405,
        json={},
        problem="method-not-allowed",
        response_headers={"allow": "DELETE, GET, HEAD, PATCH"},
    ),
    Scenario(
        "an Accept without JSON is a 406",
        "GET",
        "/v1/posts",
        406,
        headers={"Accept": "text/html"},
        problem="not-acceptable",
    ),
    Scenario(
        "JSON refused with q=0 is a 406",
        "GET",
        "/v1/posts/{post}",
        406,
        headers={"Accept": "application/json;q=0, text/csv"},
        problem="not-acceptable",
    ),
    Scenario(
        "a duplicate unique value is a 409 naming the field",
        "POST",
        "/v1/users",
        409,
        json={"handle": "ada"},
        problem="conflict",
        detail_contains="handle",
    ),
    Scenario(
        "a duplicate unique pair is a 409",
        "POST",
        "/v1/likes",
        409,
        json={"post": "{post}", "user": "{user}"},
        problem="conflict",
    ),
    Scenario(
        "deleting a record still referenced is a 409",
        "DELETE",
        "/v1/users/{user}",
        409,
        problem="conflict",
    ),
    Scenario(
        "a stale If-Match is a 412",
        "PATCH",
        "/v1/posts/{post}",
        412,
        json={"title": "x"},
        headers={"If-Match": '"7"'},
        problem="precondition-failed",
    ),
    Scenario(
        "a stale If-Match on delete is a 412",
        "DELETE",
        "/v1/posts/{post}",
        412,
        headers={"If-Match": '"2"'},
        problem="precondition-failed",
    ),
    Scenario(
        "a weak If-Match never matches: 412",
        "PATCH",
        "/v1/posts/{post}",
        412,
        json={"title": "x"},
        headers={"If-Match": 'W/"1"'},
        problem="precondition-failed",
    ),
    Scenario(
        "a text/plain body is a 415",
        "POST",
        "/v1/users",
        415,
        content=b'{"handle": "bob"}',
        headers={"Content-Type": "text/plain"},
        problem="unsupported-media-type",
    ),
    Scenario(
        "a body without a content type is a 415",
        "POST",
        "/v1/users",
        415,
        content=b'{"handle": "bob"}',
        problem="unsupported-media-type",
    ),
    Scenario(
        "merge-patch+json is refused on POST: 415",
        "POST",
        "/v1/users",
        415,
        content=b'{"handle": "bob"}',
        headers={"Content-Type": "application/merge-patch+json"},
        problem="unsupported-media-type",
    ),
    Scenario(
        "a non UTF-8 charset is a 415",
        "POST",
        "/v1/users",
        415,
        content=b'{"handle": "bob"}',
        headers={"Content-Type": "application/json; charset=latin-1"},
        problem="unsupported-media-type",
    ),
    Scenario(
        "every bad field is listed in one 422",
        "POST",
        "/v1/posts",
        422,
        json={"author": "nope", "title": "t" * 101, "score": "high", "colour": "red"},
        problem="validation",
        error_fields=("author", "title", "score", "colour"),
    ),
    Scenario(
        "server-managed fields in a body are named in a 422",
        "POST",
        "/v1/users",
        422,
        json={
            "handle": "bob",
            "id": "{missing}",
            "version": 3,
            "created_at": "2020-01-01T00:00:00Z",
        },
        problem="validation",
        error_fields=("id", "version", "created_at"),
    ),
    Scenario(
        "a counter cannot be set by a client: 422",
        "PATCH",
        "/v1/posts/{post}",
        422,
        json={"like_count": 1000},
        problem="validation",
        error_fields=("like_count",),
    ),
    Scenario(
        "a declared check failing is a 422",
        "POST",
        "/v1/posts",
        422,
        json={"author": "{user}", "title": "t", "score": -1},
        problem="validation",
        error_fields=("score",),
    ),
    Scenario(
        "a body that is not an object is a 422",
        "POST",
        "/v1/users",
        422,
        json=["handle"],
        problem="validation",
    ),
    Scenario(
        "a limit over 100 is a 422",
        "GET",
        "/v1/posts?limit=101",
        422,
        problem="validation",
        error_fields=("limit",),
    ),
    Scenario(
        "the same Idempotency-Key with another body is a 422",
        "POST",
        "/v1/users",
        422,
        json={"handle": "bobby"},
        headers={"Idempotency-Key": "seeded-key"},
        problem="validation",
    ),
    Scenario(
        "a write without If-Match where the design requires it is a 428",
        "PATCH",
        "/v1/notes/{note}",
        428,
        json={"text": "changed"},
        problem="precondition-required",
    ),
    Scenario(
        "a delete without If-Match where the design requires it is a 428",
        "DELETE",
        "/v1/notes/{note}",
        428,
        problem="precondition-required",
    ),
]


@pytest.mark.anyio
@pytest.mark.parametrize("scenario", ERRORS, ids=lambda s: s.name)
async def test_the_status_table_holds(api, scenario: Scenario) -> None:
    ids = await seed(api)
    await api.create("likes", {"post": ids["post"], "user": ids["user"]})
    seeded = await api.client.post(
        "/v1/users", json={"handle": "bob"}, headers={"Idempotency-Key": "seeded-key"}
    )
    assert seeded.status_code == 201
    before = {t: await api.count_rows(t) for t in api.design.resources}
    await run(api, scenario, ids)
    if scenario.method != "GET":
        assert {t: await api.count_rows(t) for t in api.design.resources} == before


@pytest.mark.anyio
async def test_a_body_over_the_limit_is_a_413(make_api) -> None:
    api = await make_api(max_body_bytes=1000)
    response = await api.client.post("/v1/users", json={"handle": "x" * 2000})
    assert response.status_code == 413
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["type"] == "/problems/payload-too-large"
    assert await api.count_rows("users") == 0


@pytest.mark.anyio
async def test_a_chunked_body_growing_over_the_limit_is_a_413(make_api) -> None:
    api = await make_api(max_body_bytes=1000)
    sent = 0

    async def chunks():
        nonlocal sent
        yield b'{"handle": "'
        for _ in range(100):
            sent += 1
            yield b"x" * 100
        yield b'"}'

    response = await api.client.post(
        "/v1/users", content=chunks(), headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 413
    assert response.json()["type"] == "/problems/payload-too-large"
    assert await api.count_rows("users") == 0


@pytest.mark.anyio
async def test_readyz_answers_503_with_retry_after_when_the_database_is_gone(
    make_api, db_target, tmp_path
) -> None:
    if db_target.dialect == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'gone' / 'nowhere.db'}"
    else:
        url = "postgresql+asyncpg://postgres@127.0.0.1:1/test"
    api = await make_api(url=url)
    response = await api.client.get("/readyz")
    assert response.status_code == 503
    assert response.headers["retry-after"]
    assert response.json()["type"] == "/problems/unavailable"
    assert (await api.client.get("/healthz")).json() == {"status": "ok"}


@pytest.mark.anyio
async def test_readyz_answers_200_when_the_database_answers(api) -> None:
    response = await api.client.get("/readyz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
