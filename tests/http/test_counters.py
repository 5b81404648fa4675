"""Counters stay exact through cascading deletes, on every dialect."""

from __future__ import annotations

from typing import Any

import pytest

from charpente.templates import template_text

SOCIAL = template_text("social")


async def _counts(api: Any, resource: str, id: str, *names: str) -> dict[str, int]:
    record = (await api.client.get(f"/v1/{resource}/{id}")).json()
    return {name: record[name] for name in names}


@pytest.mark.anyio
async def test_deleting_an_account_takes_its_cascaded_rows_off_other_records_counters(
    make_api: Any,
) -> None:
    api = await make_api(SOCIAL)
    ann = await api.create("accounts", {"handle": "ann", "email": "ann@example.com"})
    bob = await api.create("accounts", {"handle": "bob", "email": "bob@example.com"})
    anns_post = await api.create("posts", {"author": ann["id"], "body": "ann writes"})
    bobs_post = await api.create("posts", {"author": bob["id"], "body": "bob writes"})
    await api.create("likes", {"post": bobs_post["id"], "account": ann["id"]})
    await api.create("likes", {"post": anns_post["id"], "account": bob["id"]})
    await api.create("likes", {"post": anns_post["id"], "account": ann["id"]})  # two paths
    await api.create("comments", {"post": bobs_post["id"], "author": ann["id"], "body": "hi"})
    await api.create("follows", {"follower": ann["id"], "followee": bob["id"]})
    await api.create("follows", {"follower": bob["id"], "followee": ann["id"]})

    assert (await api.client.delete(f"/v1/accounts/{ann['id']}")).status_code == 204

    post = await _counts(api, "posts", bobs_post["id"], "like_count", "comment_count")
    assert post == {"like_count": 0, "comment_count": 0}
    account = await _counts(api, "accounts", bob["id"], "follower_count", "following_count")
    assert account == {"follower_count": 0, "following_count": 0}
    assert (await _counts(api, "accounts", bob["id"], "post_count")) == {"post_count": 1}
    assert await api.count_rows("likes") == 0
    assert await api.count_rows("follows") == 0


@pytest.mark.anyio
async def test_deleting_a_post_leaves_counters_of_untouched_records_alone(make_api: Any) -> None:
    api = await make_api(SOCIAL)
    ann = await api.create("accounts", {"handle": "ann", "email": "ann@example.com"})
    first = await api.create("posts", {"author": ann["id"], "body": "first"})
    second = await api.create("posts", {"author": ann["id"], "body": "second"})
    await api.create("likes", {"post": first["id"], "account": ann["id"]})
    await api.create("likes", {"post": second["id"], "account": ann["id"]})

    assert (await api.client.delete(f"/v1/posts/{first['id']}")).status_code == 204

    assert await _counts(api, "posts", second["id"], "like_count") == {"like_count": 1}
    assert await _counts(api, "accounts", ann["id"], "post_count") == {"post_count": 1}
