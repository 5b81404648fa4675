"""CRUD on the social template, and hostile inputs, on every dialect."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any

import pytest

from charpente.templates import template_text

SOCIAL = template_text("social")


@dataclass(frozen=True)
class Crud:
    """How one social resource goes through its life, and who does each step."""

    owner: str  # who creates, patches and deletes the record
    body: dict[str, Any]  # `{post}` names the seeded post
    patch: dict[str, Any]
    changed: str | None  # the field the patch changes
    patch_status: int = 200  # a resource without an update rule refuses members


CRUD: dict[str, Crud] = {
    "accounts": Crud(
        "root", {"handle": "grace", "email": "grace@example.com"}, {"bio": "hi"}, "bio"
    ),
    "posts": Crud("ada", {"body": "hello"}, {"visibility": "private"}, "visibility"),
    "follows": Crud("bob", {"followee": "{ada}"}, {}, None, patch_status=403),
    "likes": Crud("bob", {"post": "{post}"}, {}, None, patch_status=403),
    "comments": Crud("bob", {"post": "{post}", "body": "nice"}, {"body": "nicer"}, "body"),
    "shares": Crud("bob", {"post": "{post}"}, {"comment": "look"}, "comment"),
}


async def _social_seed(api: Any) -> tuple[dict[str, dict[str, str]], dict[str, str]]:
    """ada (with a public post), bob and root (an admin): their headers, and the ids."""
    headers = {
        "ada": await api.sign_in("ada@example.com", handle="ada"),
        "bob": await api.sign_in("bob@example.com", handle="bob"),
        "root": await api.sign_in("root@example.com", "admin", handle="root"),
    }
    post = await api.client.post("/v1/posts", json={"body": "first"}, headers=headers["ada"])
    assert post.status_code == 201, post.text
    ids = {name: api.ids[f"{name}@example.com"] for name in headers}
    return headers, {**ids, "post": post.json()["id"]}


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
    headers, ids = await _social_seed(api)
    crud = CRUD[resource]
    client, owner = api.client, headers[crud.owner]

    created = await client.post(f"/v1/{resource}", json=_fill(crud.body, ids), headers=owner)
    assert created.status_code == 201, created.text
    record = created.json()
    assert created.headers["location"] == f"/v1/{resource}/{record['id']}"
    assert created.headers["etag"] == '"1"'
    assert uuid.UUID(record["id"]).version == 7
    assert record["version"] == 1
    assert record["created_at"].endswith("Z")
    for name in ("author", "follower", "account"):  # `default: auth.id`: the caller
        if name in record:
            assert record[name] == ids[crud.owner]

    fetched = await client.get(created.headers["location"], headers=owner)
    assert fetched.status_code == 200
    assert fetched.json() == record
    assert fetched.headers["etag"] == '"1"'

    listed = await client.get(f"/v1/{resource}?limit=100", headers=owner)
    assert record["id"] in [r["id"] for r in listed.json()["data"]]

    url = f"/v1/{resource}/{record['id']}"
    patched = await client.patch(url, json=crud.patch, headers={**owner, "If-Match": '"1"'})
    assert patched.status_code == crud.patch_status, patched.text
    version = 1
    if crud.patch_status == 200:
        version = 1 if crud.changed is None else 2
        assert patched.json()["version"] == version
        assert patched.headers["etag"] == f'"{version}"'
        if crud.changed is not None:
            assert patched.json()[crud.changed] == crud.patch[crud.changed]

    stale = await client.delete(url, headers={**owner, "If-Match": f'"{version + 7}"'})
    assert stale.status_code == 412
    deleted = await client.delete(url, headers={**owner, "If-Match": f'"{version}"'})
    assert deleted.status_code == 204
    assert deleted.content == b""
    assert (await client.get(url, headers=owner)).status_code == 404


@pytest.mark.anyio
async def test_social_counters_follow_likes_and_follows(make_api) -> None:
    api = await make_api(SOCIAL)
    headers, ids = await _social_seed(api)
    bob = headers["bob"]
    like = await api.client.post("/v1/likes", json={"post": ids["post"]}, headers=bob)
    assert like.status_code == 201, like.text
    follow = await api.client.post("/v1/follows", json={"followee": ids["ada"]}, headers=bob)
    assert follow.status_code == 201, follow.text
    post = (await api.client.get(f"/v1/posts/{ids['post']}")).json()
    ada = (await api.client.get(f"/v1/accounts/{ids['ada']}", headers=bob)).json()
    me = (await api.client.get(f"/v1/accounts/{ids['bob']}", headers=bob)).json()
    assert (post["like_count"], ada["follower_count"], me["following_count"]) == (1, 1, 1)
    assert ada["post_count"] == 1
    gone = await api.client.delete(f"/v1/likes/{like.json()['id']}", headers=bob)
    assert gone.status_code == 204
    assert (await api.client.get(f"/v1/posts/{ids['post']}")).json()["like_count"] == 0


@pytest.mark.anyio
async def test_a_following_oneself_breaks_the_declared_check(make_api) -> None:
    api = await make_api(SOCIAL)
    headers, ids = await _social_seed(api)
    response = await api.client.post(
        "/v1/follows", json={"followee": ids["ada"]}, headers=headers["ada"]
    )
    assert response.status_code == 422
    assert response.json()["errors"][0]["code"] == "check"
    assert await api.count_rows("follows") == 0


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
