"""Signing up, signing in and the social template's rules, over HTTP, on every dialect."""

from __future__ import annotations

from typing import Any

import pytest

from charpente.templates import template_text

SOCIAL = template_text("social")
PASSWORD = "correct horse battery staple"

pytestmark = pytest.mark.anyio


async def signup(api: Any, email: str, handle: str) -> dict[str, str]:
    body = {"email": email, "password": PASSWORD, "handle": handle}
    created = await api.client.post("/v1/auth/signup", json=body)
    assert created.status_code == 201, created.text
    form = {"grant_type": "password", "username": email, "password": PASSWORD}
    token = await api.client.post("/v1/auth/token", data=form)
    assert token.status_code == 200, token.text
    assert token.headers["cache-control"] == "no-store"
    pair = token.json()
    assert pair["token_type"] == "Bearer"
    assert pair["expires_in"] == 900
    api.ids[email] = created.json()["id"]
    return {"Authorization": f"Bearer {pair['access_token']}"}


async def test_a_person_signs_up_signs_in_and_posts_as_themself(make_api) -> None:
    api = await make_api(SOCIAL)
    ada = await signup(api, "Ada@Example.com", "ada")

    me = await api.client.get("/v1/auth/me", headers=ada)
    assert me.status_code == 200
    assert me.json()["email"] == "ada@example.com"
    assert me.json()["role"] == "member"
    post = await api.client.post("/v1/posts", json={"body": "hello"}, headers=ada)
    assert post.status_code == 201, post.text
    assert post.json()["author"] == api.ids["Ada@Example.com"]


async def test_anonymous_callers_read_public_posts_and_cannot_write(make_api) -> None:
    api = await make_api(SOCIAL)
    ada = await signup(api, "ada@example.com", "ada")
    public = (await api.client.post("/v1/posts", json={"body": "hi"}, headers=ada)).json()
    private = await api.client.post(
        "/v1/posts", json={"body": "secret", "visibility": "private"}, headers=ada
    )

    listed = await api.client.get("/v1/posts")
    assert [p["id"] for p in listed.json()["data"]] == [public["id"]]
    assert (await api.client.get(f"/v1/posts/{private.json()['id']}")).status_code == 404
    refused = await api.client.post("/v1/posts", json={"body": "x"})
    assert refused.status_code == 401
    assert refused.headers["www-authenticate"].startswith("Bearer")


async def test_followers_see_followers_only_posts_and_others_do_not(make_api) -> None:
    api = await make_api(SOCIAL)
    ada = await signup(api, "ada@example.com", "ada")
    bob = await signup(api, "bob@example.com", "bob")
    eve = await signup(api, "eve@example.com", "eve")
    body = {"body": "for my followers", "visibility": "followers"}
    post = (await api.client.post("/v1/posts", json=body, headers=ada)).json()
    follow = {"followee": api.ids["ada@example.com"]}
    assert (await api.client.post("/v1/follows", json=follow, headers=bob)).status_code == 201

    for headers, status in ((bob, 200), (eve, 404), (ada, 200)):
        answer = await api.client.get(f"/v1/posts/{post['id']}", headers=headers)
        assert answer.status_code == status
    eve_list = await api.client.get("/v1/posts", headers=eve)
    assert eve_list.json()["data"] == []


async def test_only_the_author_edits_and_a_moderator_deletes(make_api) -> None:
    api = await make_api(SOCIAL)
    ada = await signup(api, "ada@example.com", "ada")
    bob = await signup(api, "bob@example.com", "bob")
    mod = await api.sign_in("mod@example.com", "moderator", handle="mod")
    post = (await api.client.post("/v1/posts", json={"body": "mine"}, headers=ada)).json()
    url = f"/v1/posts/{post['id']}"

    assert (await api.client.patch(url, json={"body": "yours"}, headers=bob)).status_code == 403
    assert (await api.client.delete(url, headers=bob)).status_code == 403
    assert (await api.client.patch(url, json={"body": "edited"}, headers=ada)).status_code == 200
    assert (await api.client.delete(url, headers=mod)).status_code == 204


async def test_an_email_is_shown_to_its_owner_only(make_api) -> None:
    api = await make_api(SOCIAL)
    ada = await signup(api, "ada@example.com", "ada")
    bob = await signup(api, "bob@example.com", "bob")
    url = f"/v1/accounts/{api.ids['ada@example.com']}"

    assert "email" in (await api.client.get(url, headers=ada)).json()
    assert "email" not in (await api.client.get(url, headers=bob)).json()
    assert "email" not in (await api.client.get(url)).json()
    probe = await api.client.get("/v1/accounts", params={"filter": 'email == "ada@example.com"'})
    assert probe.status_code == 400


async def test_a_refresh_token_rotates_and_its_reuse_ends_the_family(make_api) -> None:
    api = await make_api(SOCIAL)
    await signup(api, "ada@example.com", "ada")
    form = {"grant_type": "password", "username": "ada@example.com", "password": PASSWORD}
    first = (await api.client.post("/v1/auth/token", data=form)).json()["refresh_token"]

    rotated = await api.client.post(
        "/v1/auth/token", data={"grant_type": "refresh_token", "refresh_token": first}
    )
    assert rotated.status_code == 200
    second = rotated.json()["refresh_token"]
    reused = await api.client.post(
        "/v1/auth/token", data={"grant_type": "refresh_token", "refresh_token": first}
    )
    assert reused.status_code == 400
    assert reused.json()["error"] == "invalid_grant"
    after = await api.client.post(
        "/v1/auth/token", data={"grant_type": "refresh_token", "refresh_token": second}
    )
    assert after.json()["error"] == "invalid_grant"


async def test_a_wrong_password_and_an_unknown_email_get_the_same_answer(make_api) -> None:
    api = await make_api(SOCIAL)
    await signup(api, "ada@example.com", "ada")
    answers = []
    for email in ("ada@example.com", "nobody@example.com"):
        form = {"grant_type": "password", "username": email, "password": "wrong password!"}
        answer = await api.client.post("/v1/auth/token", data=form)
        answers.append((answer.status_code, answer.json()))
    assert answers[0] == answers[1]
    assert answers[0][1]["error"] == "invalid_grant"
