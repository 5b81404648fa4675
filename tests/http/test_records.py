"""CRUD on the social template, and hostile inputs, on every dialect."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest

from charpente.templates import template_text

SOCIAL = template_text("social")

# resource → (create body, patch, the field the patch changes or None for a no-op patch)
CRUD: dict[str, tuple[dict[str, Any], dict[str, Any], str | None]] = {
    "accounts": ({"handle": "grace", "email": "grace@example.com"}, {"bio": "hi"}, "bio"),
    "posts": ({"author": "{ada}", "body": "hello"}, {"visibility": "private"}, "visibility"),
    "follows": ({"follower": "{ada}", "followee": "{bob}"}, {}, None),
    "likes": ({"post": "{post}", "account": "{bob}"}, {}, None),
    "comments": ({"post": "{post}", "author": "{bob}", "body": "nice"}, {"body": "nicer"}, "body"),
    "shares": ({"post": "{post}", "account": "{bob}"}, {"comment": "look"}, "comment"),
}


async def _social_seed(api: Any) -> dict[str, str]:
    ada = await api.create("accounts", {"handle": "ada", "email": "ada@example.com"})
    bob = await api.create("accounts", {"handle": "bob", "email": "bob@example.com"})
    post = await api.create("posts", {"author": ada["id"], "body": "first"})
    return {"ada": ada["id"], "bob": bob["id"], "post": post["id"]}


def _fill(body: dict[str, Any], ids: dict[str, str]) -> dict[str, Any]:
    return {
        k: ids[v[1:-1]] if isinstance(v, str) and v.startswith("{") else v for k, v in body.items()
    }


@pytest.mark.anyio
@pytest.mark.parametrize("resource", sorted(CRUD))
async def test_a_social_record_goes_through_create_read_list_patch_delete(
    make_api, resource: str
) -> None:
    api = await make_api(SOCIAL)
    ids = await _social_seed(api)
    body, patch, changed = CRUD[resource]
    client = api.client

    created = await client.post(f"/v1/{resource}", json=_fill(body, ids))
    assert created.status_code == 201, created.text
    record = created.json()
    assert created.headers["location"] == f"/v1/{resource}/{record['id']}"
    assert created.headers["etag"] == '"1"'
    assert uuid.UUID(record["id"]).version == 7
    assert record["version"] == 1
    assert record["created_at"].endswith("Z")

    fetched = await client.get(created.headers["location"])
    assert fetched.status_code == 200
    assert fetched.json() == record

    listed = await client.get(f"/v1/{resource}?limit=100")
    assert record["id"] in [r["id"] for r in listed.json()["data"]]

    patched = await client.patch(
        f"/v1/{resource}/{record['id']}", json=patch, headers={"If-Match": '"1"'}
    )
    assert patched.status_code == 200, patched.text
    expected_version = 1 if changed is None else 2
    assert patched.json()["version"] == expected_version
    assert patched.headers["etag"] == f'"{expected_version}"'
    if changed is not None:
        assert patched.json()[changed] == patch[changed]

    deleted = await client.delete(
        f"/v1/{resource}/{record['id']}", headers={"If-Match": f'"{expected_version}"'}
    )
    assert deleted.status_code == 204
    assert deleted.content == b""
    assert (await client.get(f"/v1/{resource}/{record['id']}")).status_code == 404


@pytest.mark.anyio
async def test_social_counters_follow_likes_and_follows(make_api) -> None:
    api = await make_api(SOCIAL)
    ids = await _social_seed(api)
    like = await api.create("likes", {"post": ids["post"], "account": ids["bob"]})
    await api.create("follows", {"follower": ids["bob"], "followee": ids["ada"]})
    post = (await api.client.get(f"/v1/posts/{ids['post']}")).json()
    ada = (await api.client.get(f"/v1/accounts/{ids['ada']}")).json()
    bob = (await api.client.get(f"/v1/accounts/{ids['bob']}")).json()
    assert (post["like_count"], ada["follower_count"], bob["following_count"]) == (1, 1, 1)
    assert ada["post_count"] == 1
    await api.client.delete(f"/v1/likes/{like['id']}")
    assert (await api.client.get(f"/v1/posts/{ids['post']}")).json()["like_count"] == 0


@pytest.mark.anyio
async def test_a_following_oneself_breaks_the_declared_check(make_api) -> None:
    api = await make_api(SOCIAL)
    ids = await _social_seed(api)
    response = await api.client.post(
        "/v1/follows", json={"follower": ids["ada"], "followee": ids["ada"]}
    )
    assert response.status_code == 422
    assert response.json()["errors"][0]["code"] == "check"


# --- hostile inputs (blog design) ---------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize(
    "handle", ["zoë", "日本語のハンドル", "🐍🦀🎉", "e\u0301", "rtl\u202eevil", "a b\tc"]
)
async def test_unicode_and_emoji_round_trip_and_filter(api, handle: str) -> None:
    created = await api.create("users", {"handle": handle})
    assert created["handle"] == handle
    fetched = await api.client.get(f"/v1/users/{created['id']}")
    assert fetched.json()["handle"] == handle
    literal = json.dumps(handle)
    listed = await api.client.get("/v1/users", params={"filter": f"handle == {literal}"})
    assert listed.status_code == 200, listed.text
    assert [r["id"] for r in listed.json()["data"]] == [created["id"]]


@pytest.mark.anyio
async def test_a_nul_character_in_a_body_is_a_422_naming_the_field(api) -> None:
    response = await api.client.post("/v1/users", json={"handle": "a\u0000b"})
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "handle"
    assert await api.count_rows("users") == 0


@pytest.mark.anyio
async def test_a_nul_character_in_the_query_is_a_400(api) -> None:
    response = await api.client.get("/v1/users?filter=handle%20%3D%3D%20%22a%00%22")
    assert response.status_code == 400


@pytest.mark.anyio
@pytest.mark.parametrize("score", [2**63, -(2**63) - 1, 2**64, 10**40])
async def test_an_integer_beyond_64_bits_is_a_422(api, score: int) -> None:
    user = await api.create("users", {"handle": "ada"})
    response = await api.client.post(
        "/v1/posts", json={"author": user["id"], "title": "t", "score": score}
    )
    assert response.status_code == 422, response.text
    assert response.json()["errors"][0]["field"] == "score"


@pytest.mark.anyio
async def test_the_largest_64_bit_integer_round_trips(api) -> None:
    user = await api.create("users", {"handle": "ada"})
    post = await api.create("posts", {"author": user["id"], "title": "t", "score": 2**63 - 1})
    fetched = await api.client.get(f"/v1/posts/{post['id']}")
    assert fetched.json()["score"] == 2**63 - 1


@pytest.mark.anyio
@pytest.mark.parametrize("price", ["0.10", "1234567890123.45", "12345678901234567890123.45"])
async def test_a_decimal_stays_exact_as_a_json_string(api, price: str) -> None:
    if api.dialect == "sqlite" and len(price) > 16:
        pytest.skip("SQLite keeps NUMERIC as a double: exact up to 15 significant digits")
    user = await api.create("users", {"handle": "ada"})
    post = await api.create("posts", {"author": user["id"], "title": "t", "price": price})
    assert post["price"] == price
    fetched = await api.client.get(f"/v1/posts/{post['id']}")
    assert fetched.json()["price"] == price


@pytest.mark.anyio
async def test_a_filter_with_a_number_beyond_64_bits_is_refused_not_a_crash(api) -> None:
    response = await api.client.get("/v1/posts", params={"filter": f"score > {10**30}"})
    assert response.status_code in (400, 422), response.text


@pytest.mark.anyio
@pytest.mark.parametrize("length", [31, 10_000, 500_000])
async def test_an_overlong_string_is_a_422(api, length: int) -> None:
    response = await api.client.post("/v1/users", json={"handle": "x" * length})
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "handle"


@pytest.mark.anyio
async def test_an_overlong_unknown_key_is_not_echoed_whole(api) -> None:
    response = await api.client.post("/v1/users", json={"handle": "a", "k" * 100_000: 1})
    assert response.status_code == 422
    assert len(response.content) < 2000


@pytest.mark.anyio
@pytest.mark.parametrize("depth", [65, 1_000, 100_000])
async def test_json_nested_too_deeply_is_a_400(api, depth: int) -> None:
    body = b'{"handle": ' + b"[" * depth + b"]" * depth + b"}"
    response = await api.client.post(
        "/v1/users", content=body, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 400
    assert response.json()["type"] == "/problems/bad-request"


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("filter", 'title == "x\'; DROP TABLE posts; --"'),
        ("filter", "title == 'x' OR 1=1"),
        ("filter", "1; DROP TABLE posts"),
        ("filter", 'title == "a" or exists(users, handle == "x"); DELETE FROM users'),
        ("filter", "score > (SELECT count(*) FROM users)"),
        ("sort", "title; DROP TABLE posts"),
        ("sort", "-(select 1)"),
        ("sort", "title desc, id"),
        ("fields", "id,title FROM users --"),
        ("expand", "author;DROP TABLE users"),
    ],
)
async def test_sql_in_query_parameters_is_inert(api, name: str, value: str) -> None:
    user = await api.create("users", {"handle": "ada"})
    for i in range(3):
        await api.create("posts", {"author": user["id"], "title": f"p{i}"})
    response = await api.client.get("/v1/posts", params={name: value})
    assert response.status_code in (200, 400), response.text
    if response.status_code == 200:
        assert response.json()["data"] == []
    total = await api.client.get("/v1/posts?count=exact")
    assert total.json()["page"]["total"] == 3
    assert await api.count_rows("users") == 1
