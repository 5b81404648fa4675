"""Writes: ETags and conditional requests, merge patches, idempotency, concurrency."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest


async def _post(api: Any) -> dict[str, Any]:
    user = await api.create("users", {"handle": "ada"})
    return await api.create("posts", {"author": user["id"], "title": "first", "score": 1})


@pytest.mark.anyio
@pytest.mark.parametrize("tag", ['"1"', 'W/"1"', "*", '"9", "1"'])
async def test_if_none_match_on_the_current_version_answers_304(api, tag: str) -> None:
    post = await _post(api)
    response = await api.client.get(f"/v1/posts/{post['id']}", headers={"If-None-Match": tag})
    assert response.status_code == 304
    assert response.content == b""
    assert response.headers["etag"] == '"1"'
    assert response.headers["x-request-id"]


@pytest.mark.anyio
async def test_if_none_match_on_an_old_version_answers_the_record(api) -> None:
    post = await _post(api)
    patched = await api.client.patch(f"/v1/posts/{post['id']}", json={"title": "second"})
    assert patched.headers["etag"] == '"2"'
    response = await api.client.get(f"/v1/posts/{post['id']}", headers={"If-None-Match": '"1"'})
    assert response.status_code == 200
    assert response.headers["etag"] == '"2"'
    assert response.json()["title"] == "second"


@pytest.mark.anyio
@pytest.mark.parametrize("content_type", ["application/merge-patch+json", "application/json"])
async def test_a_merge_patch_sets_and_nulls_fields(api, content_type: str) -> None:
    post = await _post(api)
    response = await api.client.patch(
        f"/v1/posts/{post['id']}",
        content=b'{"score": null, "title": "renamed"}',
        headers={"Content-Type": content_type, "If-Match": '"1"'},
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["score"], body["title"], body["version"]) == (None, "renamed", 2)
    assert body["updated_at"] >= post["updated_at"]
    assert body["created_at"] == post["created_at"]


@pytest.mark.anyio
async def test_a_patch_that_changes_nothing_keeps_the_version(api) -> None:
    post = await _post(api)
    response = await api.client.patch(f"/v1/posts/{post['id']}", json={"title": "first"})
    assert response.status_code == 200
    assert response.json() == post
    assert response.headers["etag"] == '"1"'


@pytest.mark.anyio
async def test_if_match_star_and_lists_accept_the_current_version(api) -> None:
    post = await _post(api)
    url = f"/v1/posts/{post['id']}"
    first = await api.client.patch(url, json={"title": "a"}, headers={"If-Match": "*"})
    assert first.status_code == 200
    second = await api.client.patch(url, json={"title": "b"}, headers={"If-Match": '"7", "2"'})
    assert second.status_code == 200
    assert second.json()["version"] == 3


@pytest.mark.anyio
async def test_a_required_if_match_resource_takes_writes_with_it(api) -> None:
    note = await api.create("notes", {"text": "a"})
    url = f"/v1/notes/{note['id']}"
    patched = await api.client.patch(url, json={"text": "b"}, headers={"If-Match": '"1"'})
    assert patched.status_code == 200
    deleted = await api.client.delete(url, headers={"If-Match": '"2"'})
    assert deleted.status_code == 204


@pytest.mark.anyio
async def test_a_retried_post_with_the_same_key_replays_the_first_answer(api) -> None:
    headers = {"Idempotency-Key": "order-7f3a"}
    first = await api.client.post("/v1/users", json={"handle": "ada"}, headers=headers)
    again = await api.client.post("/v1/users", json={"handle": "ada"}, headers=headers)
    assert first.status_code == again.status_code == 201
    assert again.content == first.content
    assert again.headers["location"] == first.headers["location"]
    assert again.headers["idempotent-replayed"] == "true"
    assert "idempotent-replayed" not in first.headers
    assert await api.count_rows("users") == 1


@pytest.mark.anyio
async def test_the_same_key_with_a_reordered_body_is_the_same_request(api) -> None:
    headers = {"Idempotency-Key": "k", "Content-Type": "application/json"}
    user = await api.create("users", {"handle": "ada"})
    one = b'{"author": "%s", "title": "t"}' % user["id"].encode()
    two = b'{ "title": "t",  "author": "%s" }' % user["id"].encode()
    first = await api.client.post("/v1/posts", content=one, headers=headers)
    again = await api.client.post("/v1/posts", content=two, headers=headers)
    assert (first.status_code, again.status_code) == (201, 201)
    assert again.json()["id"] == first.json()["id"]


@pytest.mark.anyio
async def test_a_failed_post_does_not_burn_its_idempotency_key(api) -> None:
    headers = {"Idempotency-Key": "retry-me"}
    failed = await api.client.post("/v1/users", json={"handle": "x" * 31}, headers=headers)
    assert failed.status_code == 422
    fixed = await api.client.post("/v1/users", json={"handle": "ada"}, headers=headers)
    assert fixed.status_code == 201


@pytest.mark.anyio
async def test_a_delete_then_get_is_a_404_and_a_second_delete_too(api) -> None:
    post = await _post(api)
    url = f"/v1/posts/{post['id']}"
    assert (await api.client.delete(url)).status_code == 204
    assert (await api.client.get(url)).status_code == 404
    assert (await api.client.delete(url)).status_code == 404


@pytest.mark.anyio
async def test_twenty_concurrent_patches_with_one_if_match_let_exactly_one_win(
    make_pg_api,
) -> None:
    api = await make_pg_api()
    post = await _post(api)
    url = f"/v1/posts/{post['id']}"

    async def patch(i: int) -> Any:
        return await api.client.patch(url, json={"title": f"w{i}"}, headers={"If-Match": '"1"'})

    responses = await asyncio.gather(*(patch(i) for i in range(20)))
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200] + [412] * 19
    winner = next(r for r in responses if r.status_code == 200).json()
    stored = (await api.client.get(url)).json()
    assert stored["title"] == winner["title"]
    assert stored["version"] == 2


@pytest.mark.anyio
async def test_ten_concurrent_posts_with_one_key_create_one_record(make_pg_api) -> None:
    api = await make_pg_api()
    headers = {"Idempotency-Key": "same-key"}

    async def post() -> Any:
        return await api.client.post("/v1/users", json={"handle": "ada"}, headers=headers)

    responses = await asyncio.gather(*(post() for _ in range(10)))
    assert {r.status_code for r in responses} == {201}
    assert len({r.json()["id"] for r in responses}) == 1
    assert len({r.content for r in responses}) == 1
    assert sum("idempotent-replayed" in r.headers for r in responses) == 9
    assert await api.count_rows("users") == 1
