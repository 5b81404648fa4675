"""Entity tags over expanded records, idempotency key scope, query strings on writes."""

from __future__ import annotations

from typing import Any

import pytest


@pytest.mark.anyio
async def test_an_expanded_get_answers_200_again_after_the_author_changes(api: Any) -> None:
    author = await api.create("users", {"handle": "ada"})
    post = await api.create("posts", {"author": author["id"], "title": "t"})
    url = f"/v1/posts/{post['id']}?expand=author"

    first = await api.client.get(url)
    etag = first.headers["etag"]
    assert etag.startswith('"1-')
    assert (await api.client.get(url, headers={"If-None-Match": etag})).status_code == 304

    patched = await api.client.patch(f"/v1/users/{author['id']}", json={"handle": "lovelace"})
    assert patched.status_code == 200
    again = await api.client.get(url, headers={"If-None-Match": etag})
    assert again.status_code == 200
    assert again.json()["author"]["handle"] == "lovelace"
    assert again.headers["etag"] not in (etag, '"1"')


@pytest.mark.anyio
async def test_a_get_without_expand_keeps_the_version_as_entity_tag(api: Any) -> None:
    author = await api.create("users", {"handle": "ada"})
    post = await api.create("posts", {"author": author["id"], "title": "t"})
    fetched = await api.client.get(f"/v1/posts/{post['id']}")
    assert fetched.headers["etag"] == '"1"'


@pytest.mark.anyio
async def test_one_idempotency_key_serves_two_collections_independently(api: Any) -> None:
    author = await api.create("users", {"handle": "ada"})
    key = {"Idempotency-Key": "same-key"}
    post = await api.client.post(
        "/v1/posts", json={"author": author["id"], "title": "t"}, headers=key
    )
    assert post.status_code == 201
    like = await api.client.post(
        "/v1/likes", json={"post": post.json()["id"], "user": author["id"]}, headers=key
    )
    assert like.status_code == 201, like.text
    replay = await api.client.post(
        "/v1/posts", json={"author": author["id"], "title": "t"}, headers=key
    )
    assert replay.headers.get("idempotent-replayed") == "true"
    assert replay.json() == post.json()
