"""Counters stay exact through cascading deletes, on every dialect, with signed-in callers."""

from __future__ import annotations

from typing import Any

import pytest

from charpente.templates import template_text

SOCIAL = template_text("social")


async def _counts(api: Any, resource: str, id: str, *names: str) -> dict[str, int]:
    response = await api.client.get(f"/v1/{resource}/{id}", headers=api.root)
    assert response.status_code == 200, response.text
    record = response.json()
    return {name: record[name] for name in names}


async def _post(api: Any, resource: str, body: dict[str, Any], who: dict[str, str]) -> str:
    response = await api.client.post(f"/v1/{resource}", json=body, headers=who)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


async def _social(make_api: Any) -> Any:
    api = await make_api(SOCIAL)
    api.root = await api.sign_in("root@example.com", "admin", handle="root")
    return api


@pytest.mark.anyio
async def test_deleting_an_account_takes_its_cascaded_rows_off_other_records_counters(
    make_api: Any,
) -> None:
    api = await _social(make_api)
    ann = await api.sign_in("ann@example.com", handle="ann")
    bob = await api.sign_in("bob@example.com", handle="bob")
    ann_id, bob_id = api.ids["ann@example.com"], api.ids["bob@example.com"]
    anns_post = await _post(api, "posts", {"body": "ann writes"}, ann)
    bobs_post = await _post(api, "posts", {"body": "bob writes"}, bob)
    await _post(api, "likes", {"post": bobs_post}, ann)
    await _post(api, "likes", {"post": anns_post}, bob)
    await _post(api, "likes", {"post": anns_post}, ann)  # two cascade paths to one row
    await _post(api, "comments", {"post": bobs_post, "body": "hi"}, ann)
    await _post(api, "shares", {"post": bobs_post}, ann)
    await _post(api, "follows", {"followee": bob_id}, ann)
    await _post(api, "follows", {"followee": ann_id}, bob)
    before = await _counts(api, "posts", bobs_post, "like_count", "comment_count", "share_count")
    assert before == {"like_count": 1, "comment_count": 1, "share_count": 1}

    assert (await api.client.delete(f"/v1/accounts/{ann_id}", headers=ann)).status_code == 204

    post = await _counts(api, "posts", bobs_post, "like_count", "comment_count", "share_count")
    assert post == {"like_count": 0, "comment_count": 0, "share_count": 0}
    account = await _counts(api, "accounts", bob_id, "follower_count", "following_count")
    assert account == {"follower_count": 0, "following_count": 0}
    assert (await _counts(api, "accounts", bob_id, "post_count")) == {"post_count": 1}
    assert await api.count_rows("likes") == 0
    assert await api.count_rows("follows") == 0
    assert await api.count_rows("comments") == 0
    assert await api.count_rows("posts") == 1


@pytest.mark.anyio
async def test_deleting_a_post_leaves_counters_of_untouched_records_alone(make_api: Any) -> None:
    api = await _social(make_api)
    ann = await api.sign_in("ann@example.com", handle="ann")
    ann_id = api.ids["ann@example.com"]
    first = await _post(api, "posts", {"body": "first"}, ann)
    second = await _post(api, "posts", {"body": "second"}, ann)
    await _post(api, "likes", {"post": first}, ann)
    await _post(api, "likes", {"post": second}, ann)
    assert await _counts(api, "accounts", ann_id, "post_count") == {"post_count": 2}

    assert (await api.client.delete(f"/v1/posts/{first}", headers=ann)).status_code == 204

    assert await _counts(api, "posts", second, "like_count") == {"like_count": 1}
    assert await _counts(api, "accounts", ann_id, "post_count") == {"post_count": 1}


@pytest.mark.anyio
async def test_a_moderator_deleting_a_post_keeps_its_authors_counter_exact(make_api: Any) -> None:
    api = await _social(make_api)
    ann = await api.sign_in("ann@example.com", handle="ann")
    mod = await api.sign_in("mod@example.com", "moderator", handle="mod")
    post = await _post(api, "posts", {"body": "rude"}, ann)
    await _post(api, "comments", {"post": post, "body": "agreed"}, mod)

    assert (await api.client.delete(f"/v1/posts/{post}", headers=mod)).status_code == 204

    ann_id, mod_id = api.ids["ann@example.com"], api.ids["mod@example.com"]
    assert await _counts(api, "accounts", ann_id, "post_count") == {"post_count": 0}
    assert await _counts(api, "accounts", mod_id, "post_count") == {"post_count": 0}
    assert await api.count_rows("comments") == 0


@pytest.mark.anyio
async def test_unfollowing_and_refollowing_keeps_both_counters_exact(make_api: Any) -> None:
    api = await _social(make_api)
    ann = await api.sign_in("ann@example.com", handle="ann")
    await api.sign_in("bob@example.com", handle="bob")
    ann_id, bob_id = api.ids["ann@example.com"], api.ids["bob@example.com"]
    follow = await _post(api, "follows", {"followee": bob_id}, ann)
    twice = await api.client.post("/v1/follows", json={"followee": bob_id}, headers=ann)
    assert twice.status_code == 409
    assert (await api.client.delete(f"/v1/follows/{follow}", headers=ann)).status_code == 204
    await _post(api, "follows", {"followee": bob_id}, ann)

    assert await _counts(api, "accounts", bob_id, "follower_count") == {"follower_count": 1}
    assert await _counts(api, "accounts", ann_id, "following_count") == {"following_count": 1}
