"""The OWASP API Security Top 10 (2023), item by item, as requests and the answers they must get.

Most scenarios run on the social template, on every dialect; smaller designs show what the
template does not have (write-only fields, rate limits, CORS, another signing algorithm).
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import datetime
import hashlib
import hmac
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from tests.conftest import service_missing

from charpente.errors import DesignError
from charpente.loader import load_design_text
from charpente.runtime.passwords import PasswordHasher
from charpente.runtime.ratelimit import MemoryLimiter
from charpente.runtime.tokens import KeyRing, issue_access_token, new_signing_key
from charpente.templates import template_text

SOCIAL = template_text("social")
PASSWORD = "correct horse battery staple"

pytestmark = pytest.mark.anyio


class Social:
    """The social template with three members (ada, bob, eve), a moderator and an admin."""

    def __init__(self, api: Any) -> None:
        self.api = api
        self.client: httpx.AsyncClient = api.client
        self.headers: dict[str, dict[str, str]] = {}
        self.ids: dict[str, str] = {}

    async def people(self, *names: str) -> None:
        roles = {"mod": "moderator", "root": "admin"}
        for name in names:
            email = f"{name}@example.com"
            self.headers[name] = await self.api.sign_in(email, roles.get(name, ""), handle=name)
            self.ids[name] = self.api.ids[email]

    async def post(self, who: str, resource: str, body: dict[str, Any]) -> dict[str, Any]:
        response = await self.client.post(f"/v1/{resource}", json=body, headers=self.headers[who])
        assert response.status_code == 201, response.text
        record: dict[str, Any] = response.json()
        return record

    async def call(self, who: str | None, method: str, url: str, **kwargs: Any) -> httpx.Response:
        headers = {**(self.headers[who] if who else {}), **kwargs.pop("headers", {})}
        return await self.client.request(method, url, headers=headers, **kwargs)


@pytest.fixture
async def social(make_api: Any) -> Social:
    world = Social(await make_api(SOCIAL))
    await world.people("ada", "bob", "eve", "mod", "root")
    return world


def problem_fields(response: httpx.Response) -> list[str]:
    return [error["field"] for error in response.json().get("errors", [])]


def ids_of(response: httpx.Response) -> list[str]:
    assert response.status_code == 200, response.text
    return [record["id"] for record in response.json()["data"]]


# --- API1: broken object level authorization -------------------------------------------------


async def test_a_private_post_is_404_to_others_on_get_patch_and_delete(social: Social) -> None:
    private = await social.post("ada", "posts", {"body": "diary", "visibility": "private"})
    url = f"/v1/posts/{private['id']}"
    for who in ("bob", "eve", None):
        assert (await social.call(who, "GET", url)).status_code == 404
        patched = await social.call(who, "PATCH", url, json={"body": "mine now"})
        assert patched.status_code == (401 if who is None else 404)
        deleted = await social.call(who, "DELETE", url)
        assert deleted.status_code == (401 if who is None else 404)
    missing = await social.call("bob", "GET", f"/v1/posts/{uuid.uuid4()}")
    assert (await social.call("bob", "GET", url)).json()["detail"] == missing.json()["detail"]
    mine = await social.call("ada", "GET", url)
    assert mine.status_code == 200
    assert mine.json()["body"] == "diary"
    assert mine.json()["version"] == 1


async def test_a_visible_post_of_another_is_403_on_patch_and_delete(social: Social) -> None:
    public = await social.post("ada", "posts", {"body": "hello"})
    url = f"/v1/posts/{public['id']}"
    assert (await social.call("bob", "PATCH", url, json={"body": "defaced"})).status_code == 403
    assert (await social.call("bob", "DELETE", url)).status_code == 403
    assert (await social.call("ada", "GET", url)).json()["body"] == "hello"


async def test_lists_and_filters_never_reach_a_private_post(social: Social) -> None:
    public = await social.post("ada", "posts", {"body": "hello"})
    private = await social.post("ada", "posts", {"body": "diary", "visibility": "private"})
    probe = f'id == "{private["id"]}"'
    for who in ("bob", None):
        assert ids_of(await social.call(who, "GET", "/v1/posts")) == [public["id"]]
        assert ids_of(await social.call(who, "GET", "/v1/posts", params={"filter": probe})) == []
        either = f'{probe} or id == "{public["id"]}"'
        listed = await social.call(who, "GET", "/v1/posts", params={"filter": either})
        assert ids_of(listed) == [public["id"]]
        counted = await social.call(who, "GET", "/v1/posts", params={"count": "exact"})
        assert counted.json()["page"]["total"] == 1
    own = await social.call("ada", "GET", "/v1/posts", params={"filter": probe})
    assert ids_of(own) == [private["id"]]


async def test_expanding_a_reference_to_an_unreadable_record_gives_null(social: Social) -> None:
    post = await social.post("ada", "posts", {"body": "soon private"})
    like = await social.post("bob", "likes", {"post": post["id"]})
    share = await social.post("bob", "shares", {"post": post["id"], "comment": "look"})
    url = f"/v1/posts/{post['id']}"
    hidden = await social.call("ada", "PATCH", url, json={"visibility": "private"})
    assert hidden.status_code == 200, hidden.text

    for resource, record in (("likes", like), ("shares", share)):
        got = await social.call("bob", "GET", f"/v1/{resource}/{record['id']}?expand=post")
        assert got.status_code == 200
        assert got.json()["post"] is None
        listed = await social.call("bob", "GET", f"/v1/{resource}?expand=post")
        assert [r["post"] for r in listed.json()["data"]] == [None]
        owner_view = await social.call("ada", "GET", f"/v1/{resource}/{record['id']}?expand=post")
        assert owner_view.json()["post"]["body"] == "soon private"


async def test_records_cannot_be_made_in_someone_elses_name(social: Social) -> None:
    post = await social.post("ada", "posts", {"body": "hello"})
    attempts = [
        ("follows", {"follower": social.ids["ada"], "followee": social.ids["eve"]}, "follower"),
        ("likes", {"post": post["id"], "account": social.ids["ada"]}, "account"),
        ("shares", {"post": post["id"], "account": social.ids["ada"]}, "account"),
        ("posts", {"body": "forged", "author": social.ids["ada"]}, "author"),
        ("comments", {"post": post["id"], "body": "x", "author": social.ids["ada"]}, "author"),
    ]
    for resource, body, field in attempts:
        refused = await social.call("bob", "POST", f"/v1/{resource}", json=body)
        assert refused.status_code == 422, (resource, refused.text)
        assert field in problem_fields(refused), resource
    follow = await social.post("bob", "follows", {"followee": social.ids["eve"]})
    assert follow["follower"] == social.ids["bob"]
    assert await social.api.count_rows("likes") == 0


async def test_another_members_follow_like_and_account_are_theirs_to_change(
    social: Social,
) -> None:
    post = await social.post("ada", "posts", {"body": "hello"})
    follow = await social.post("ada", "follows", {"followee": social.ids["eve"]})
    like = await social.post("ada", "likes", {"post": post["id"]})
    for url in (f"/v1/follows/{follow['id']}", f"/v1/likes/{like['id']}"):
        assert (await social.call("bob", "DELETE", url)).status_code == 403
    account = f"/v1/accounts/{social.ids['ada']}"
    assert (await social.call("bob", "PATCH", account, json={"bio": "hacked"})).status_code == 403
    assert (await social.call("bob", "DELETE", account)).status_code == 403
    assert (await social.call("ada", "GET", account)).json().get("bio") is None
    assert await social.api.count_rows("follows") == 1


async def test_an_idempotency_key_replays_only_to_the_caller_that_sent_it(social: Social) -> None:
    key = {"Idempotency-Key": "same-key"}
    first = await social.call("ada", "POST", "/v1/posts", json={"body": "hi"}, headers=key)
    second = await social.call("bob", "POST", "/v1/posts", json={"body": "hi"}, headers=key)
    assert first.status_code == second.status_code == 201
    assert first.json()["id"] != second.json()["id"]
    assert second.json()["author"] == social.ids["bob"]


@pytest.mark.parametrize("resource", ["likes", "comments", "shares"])
async def test_a_write_naming_a_post_the_caller_cannot_read_looks_like_one_naming_no_post(
    social: Social, resource: str
) -> None:
    private = await social.post("ada", "posts", {"body": "diary", "visibility": "private"})
    extra = {"body": "found you"} if resource == "comments" else {}
    url = f"/v1/{resource}"
    hidden = await social.call("bob", "POST", url, json={"post": private["id"], **extra})
    missing = await social.call("bob", "POST", url, json={"post": str(uuid.uuid4()), **extra})
    assert hidden.status_code == missing.status_code == 422
    assert hidden.json()["errors"] == missing.json()["errors"]
    assert problem_fields(hidden) == ["post"]
    assert await social.api.count_rows(resource) == 0
    own = await social.call("ada", "GET", f"/v1/posts/{private['id']}")
    assert (own.json()["like_count"], own.json()["comment_count"]) == (0, 0)
    mine = await social.call("ada", "POST", url, json={"post": private["id"], **extra})
    assert mine.status_code == (403 if resource == "shares" else 201), mine.text


async def test_a_followers_only_post_can_be_liked_once_its_author_is_followed(
    social: Social,
) -> None:
    post = await social.post("ada", "posts", {"body": "friends", "visibility": "followers"})
    like = {"post": post["id"]}
    assert (await social.call("bob", "POST", "/v1/likes", json=like)).status_code == 422
    await social.post("bob", "follows", {"followee": social.ids["ada"]})
    assert (await social.call("bob", "POST", "/v1/likes", json=like)).status_code == 201


async def test_a_client_filter_cannot_reach_other_resources_or_the_caller(social: Social) -> None:
    for text in (
        f'exists(follows, follower == "{social.ids["ada"]}")',
        f'author == auth.id or id == "{uuid.uuid4()}"',
        'auth.role == "admin"',
        'author.email == "ada@example.com"',
    ):
        refused = await social.call("bob", "GET", "/v1/posts", params={"filter": text})
        assert refused.status_code == 400, (text, refused.text)


async def test_a_forbidden_write_is_403_whatever_its_if_match_says(social: Social) -> None:
    post = await social.post("ada", "posts", {"body": "hello"})
    url = f"/v1/posts/{post['id']}"
    for if_match in ('"1"', '"99"', "*"):
        headers = {"If-Match": if_match}
        patched = await social.call("bob", "PATCH", url, json={"body": "x"}, headers=headers)
        assert patched.status_code == 403, (if_match, patched.text)
        assert (await social.call("bob", "DELETE", url, headers=headers)).status_code == 403
    anonymous = await social.call(None, "DELETE", url, headers={"If-Match": '"99"'})
    assert anonymous.status_code == 401
    stale = await social.call("ada", "PATCH", url, json={"body": "x"}, headers={"If-Match": '"9"'})
    assert stale.status_code == 412


async def test_a_write_without_if_match_is_401_before_428_for_the_anonymous(make_api: Any) -> None:
    design = SOCIAL.replace("  posts:\n", "  posts:\n    require_if_match: true\n", 1)
    social = Social(await make_api(design))
    await social.people("ada", "bob")
    post = await social.post("ada", "posts", {"body": "hello"})
    url = f"/v1/posts/{post['id']}"
    assert (await social.call(None, "PATCH", url, json={"body": "x"})).status_code == 401
    assert (await social.call(None, "DELETE", url)).status_code == 401
    assert (await social.call("ada", "DELETE", url)).status_code == 428


async def test_likes_and_shares_of_a_private_post_do_not_show_it_exists(social: Social) -> None:
    post = await social.post("ada", "posts", {"body": "soon private"})
    await social.post("ada", "likes", {"post": post["id"]})
    await social.post("bob", "shares", {"post": post["id"]})
    url = f"/v1/posts/{post['id']}"
    assert (
        await social.call("ada", "PATCH", url, json={"visibility": "private"})
    ).status_code == 200
    assert (await social.call("eve", "GET", url)).status_code == 404
    probe = f'post == "{post["id"]}"'
    for resource in ("likes", "shares"):
        found = await social.call("eve", "GET", f"/v1/{resource}", params={"filter": probe})
        assert ids_of(found) == [], resource


# --- API2: broken authentication --------------------------------------------------------------


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def forge(header: dict[str, Any], claims: dict[str, Any], sign: Any = None) -> str:
    """A compact JWS of our own making; `sign(signing_input) -> bytes` (none: no signature)."""
    head = b64(json.dumps(header).encode()) + "." + b64(json.dumps(claims).encode())
    signature = b"" if sign is None else sign(head.encode())
    return head + "." + b64(signature)


def claims_for(api: Any, subject: str, **changes: Any) -> dict[str, Any]:
    now = int(time.time())
    claims = {
        "iss": api.accounts.issuer,
        "aud": api.accounts.audience,
        "sub": subject,
        "exp": now + 600,
        "iat": now,
        "jti": str(uuid.uuid4()),
        "role": "member",
    }
    return {**claims, **changes}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def assert_refused(social: Social, token: str) -> None:
    """The token opens nothing: 401 with an invalid_token challenge, on a read and a write."""
    for method, url, body in (
        ("GET", "/v1/auth/me", None),
        ("POST", "/v1/posts", {"body": "forged"}),
        ("GET", "/v1/posts", None),
    ):
        answer = await social.client.request(method, url, json=body, headers=bearer(token))
        assert answer.status_code == 401, (url, answer.text)
        assert 'error="invalid_token"' in answer.headers["www-authenticate"]
        assert answer.headers["content-type"] == "application/problem+json"
    assert await social.api.count_rows("posts") == 0


async def public_jwk(client: httpx.AsyncClient) -> dict[str, str]:
    keys = (await client.get("/.well-known/jwks.json")).json()["keys"]
    assert len(keys) == 1
    assert not {"d", "p", "q"} & set(keys[0])  # public halves only
    key: dict[str, str] = keys[0]
    return key


async def test_a_token_with_alg_none_is_refused(social: Social) -> None:
    kid = (await public_jwk(social.client))["kid"]
    claims = claims_for(social.api, social.ids["bob"], role="admin")
    for alg in ("none", "None", "NONE", ""):
        await assert_refused(social, forge({"alg": alg, "kid": kid, "typ": "JWT"}, claims))
    await assert_refused(social, forge({"alg": "none", "typ": "JWT"}, claims))


async def test_a_token_signed_with_hmac_over_the_public_key_is_refused(social: Social) -> None:
    jwk = await public_jwk(social.client)
    claims = claims_for(social.api, social.ids["bob"], role="admin")
    secrets = [unb64(jwk["x"]), jwk["x"].encode(), json.dumps(jwk).encode()]
    for secret in secrets:
        for alg, digest in (("HS256", hashlib.sha256), ("HS512", hashlib.sha512)):
            header = {"alg": alg, "kid": jwk["kid"], "typ": "JWT"}

            def sign(data: bytes, secret: bytes = secret, digest: Any = digest) -> bytes:
                return hmac.new(secret, data, digest).digest()

            await assert_refused(social, forge(header, claims, sign))


async def test_an_eddsa_header_on_an_es256_key_is_refused(make_api: Any) -> None:
    design = SOCIAL.replace("  signup: open", "  signup: open\n  algorithm: ES256")
    social = Social(await make_api(design))
    await social.people("bob")
    jwk = await public_jwk(social.client)
    assert jwk["alg"] == "ES256"
    assert jwk["crv"] == "P-256"
    me = await social.call("bob", "GET", "/v1/auth/me")
    assert me.status_code == 200  # its own tokens verify
    other = KeyRing([new_signing_key("EdDSA", datetime.datetime.now(datetime.UTC))])
    signed = issue_access_token(
        other,
        issuer=social.api.accounts.issuer,
        audience=social.api.accounts.audience,
        subject=social.ids["bob"],
        role="admin",
        now=datetime.datetime.now(datetime.UTC),
    )
    head, payload, signature = signed.split(".")
    header = json.loads(unb64(head))
    assert header["alg"] == "EdDSA"
    swapped = b64(json.dumps({**header, "kid": jwk["kid"]}).encode())
    await assert_refused(social, f"{swapped}.{payload}.{signature}")


async def test_expired_wrong_audience_and_wrong_issuer_tokens_are_refused(social: Social) -> None:
    accounts, subject = social.api.accounts, social.ids["bob"]
    now = datetime.datetime.now(datetime.UTC)
    made = {"issuer": accounts.issuer, "audience": accounts.audience, "subject": subject}

    # The ring's own key, allowed to sign in the past: tokens issued an hour ago.
    [key] = accounts.ring.published(now)
    earlier = now - datetime.timedelta(days=1)
    ring = KeyRing([dataclasses.replace(key, created_at=earlier, not_before=earlier)])

    def issue(**changes: Any) -> str:
        options = {**made, "role": "member", "now": now, "ttl": 900, **changes}
        return issue_access_token(ring, **options)

    assert (await social.client.get("/v1/auth/me", headers=bearer(issue()))).status_code == 200
    await assert_refused(social, issue(now=now - datetime.timedelta(hours=1)))
    await assert_refused(social, issue(now=now - datetime.timedelta(seconds=990)))
    await assert_refused(social, issue(audience="another-backend"))
    await assert_refused(social, issue(issuer="https://evil.example"))
    await assert_refused(social, issue(role="superuser"))  # a role the design does not have


async def test_a_tampered_payload_is_refused(social: Social) -> None:
    token = social.headers["bob"]["Authorization"].removeprefix("Bearer ")
    head, payload, signature = token.split(".")
    claims = json.loads(unb64(payload))
    for change in ({"role": "admin"}, {"sub": social.ids["ada"]}, {"exp": claims["exp"] + 3600}):
        tampered = b64(json.dumps({**claims, **change}).encode())
        await assert_refused(social, f"{head}.{tampered}.{signature}")
    flipped = signature[:-2] + ("A" if signature[-2] != "A" else "B") + signature[-1]
    await assert_refused(social, f"{head}.{payload}.{flipped}")


async def test_a_token_from_an_unknown_key_is_refused(social: Social) -> None:
    stranger = KeyRing([new_signing_key("EdDSA", datetime.datetime.now(datetime.UTC))])
    accounts = social.api.accounts
    token = issue_access_token(
        stranger,
        issuer=accounts.issuer,
        audience=accounts.audience,
        subject=social.ids["bob"],
        role="admin",
        now=datetime.datetime.now(datetime.UTC),
    )
    await assert_refused(social, token)
    head, rest = token.split(".", 1)
    header = json.loads(unb64(head))
    for kid in (None, "", "../../etc/passwd", 7, "x" * 5000):
        changed = {**header, "kid": kid} if kid is not None else {"alg": header["alg"]}
        await assert_refused(social, b64(json.dumps(changed).encode()) + "." + rest)


async def test_malformed_authorization_headers_are_401(social: Social) -> None:
    for header in (
        *("Bearer", "Bearer ", "Basic Ym9iOnB3", "Bearer a.b", "Bearer ..."),
        *("Bearer " + "a" * 9000, "Bearer a.b.c.d", "Token " + "x" * 20),
    ):
        answer = await social.client.get("/v1/posts", headers={"Authorization": header})
        assert answer.status_code == 401, header
        assert answer.headers["www-authenticate"].startswith("Bearer")


async def token_pair(client: httpx.AsyncClient, email: str, password: str = PASSWORD) -> Any:
    form = {"grant_type": "password", "username": email, "password": password}
    return await client.post("/v1/auth/token", data=form)


async def refresh(client: httpx.AsyncClient, token: str) -> httpx.Response:
    form = {"grant_type": "refresh_token", "refresh_token": token}
    return await client.post("/v1/auth/token", data=form)


async def test_a_reused_refresh_token_ends_its_whole_family(social: Social) -> None:
    first = (await token_pair(social.client, "bob@example.com")).json()["refresh_token"]
    other_device = (await token_pair(social.client, "bob@example.com")).json()["refresh_token"]
    second = (await refresh(social.client, first)).json()["refresh_token"]
    third = (await refresh(social.client, second)).json()["refresh_token"]

    stolen = await refresh(social.client, first)  # an attacker replays a rotated token
    assert stolen.status_code == 400
    assert stolen.json()["error"] == "invalid_grant"
    assert (await refresh(social.client, third)).json()["error"] == "invalid_grant"
    assert (await refresh(social.client, other_device)).status_code == 200  # another family


async def test_a_disabled_account_can_no_longer_sign_in_nor_refresh(social: Social) -> None:
    pair = (await token_pair(social.client, "bob@example.com")).json()
    url = f"/v1/accounts/{social.ids['bob']}"
    assert (await social.call("bob", "PATCH", url, json={"disabled": True})).status_code == 422
    disabled = await social.call("root", "PATCH", url, json={"disabled": True})
    assert disabled.status_code == 200, disabled.text
    assert disabled.json()["disabled"] is True

    assert (await refresh(social.client, pair["refresh_token"])).json()["error"] == "invalid_grant"
    login = await token_pair(social.client, "bob@example.com")
    wrong = await token_pair(social.client, "bob@example.com", "not the password at all")
    assert login.status_code == wrong.status_code == 400
    assert login.json() == wrong.json()  # a disabled account is not told apart

    enabled = await social.call("root", "PATCH", url, json={"disabled": False})
    assert enabled.status_code == 200
    assert (await token_pair(social.client, "bob@example.com")).status_code == 200


async def test_a_changed_password_ends_every_refresh_family(social: Social) -> None:
    laptop = (await token_pair(social.client, "bob@example.com")).json()["refresh_token"]
    phone = (await token_pair(social.client, "bob@example.com")).json()["refresh_token"]
    new = "an entirely different passphrase"
    wrong = await social.call(
        "bob", "POST", "/v1/auth/password", json={"current_password": "guess", "new_password": new}
    )
    assert wrong.status_code == 422
    assert (await refresh(social.client, laptop)).status_code == 200  # nothing ended yet
    laptop = (await token_pair(social.client, "bob@example.com")).json()["refresh_token"]

    body = {"current_password": PASSWORD, "new_password": new}
    changed = await social.call("bob", "POST", "/v1/auth/password", json=body)
    assert changed.status_code == 204, changed.text

    for token in (laptop, phone):
        assert (await refresh(social.client, token)).json()["error"] == "invalid_grant"
    assert (await token_pair(social.client, "bob@example.com")).status_code == 400
    fresh = await token_pair(social.client, "bob@example.com", new)
    assert fresh.status_code == 200
    # Issued within the same second as the change, and still after it: it works.
    headers = {"Authorization": f"Bearer {fresh.json()['access_token']}"}
    assert (await social.client.get("/v1/auth/me", headers=headers)).status_code == 200
    assert (await social.call("bob", "GET", "/v1/auth/me")).status_code == 401


async def test_signing_in_takes_as_long_for_a_missing_account_as_for_a_wrong_password(
    social: Social,
) -> None:
    # A hasher costly enough that a skipped verification would show above the noise.
    social.api.accounts.hasher = PasswordHasher(time_cost=2, memory_kib=16_384)
    await social.people("tim")
    times: dict[str, list[float]] = {"tim@example.com": [], "nobody@example.com": []}
    for _ in range(9):
        for email, spent in times.items():
            started = time.perf_counter()
            answer = await token_pair(social.client, email, "wrong password, sorry")
            spent.append(time.perf_counter() - started)
            assert answer.json()["error"] == "invalid_grant"
    known, missing = (statistics.median(spent) for spent in times.values())
    assert 0.5 < missing / known < 2, (known, missing)


async def test_access_tokens_end_when_their_account_is_disabled_or_changes_role(
    social: Social,
) -> None:
    post = await social.post("ada", "posts", {"body": "rude"})
    bob, mod = f"/v1/accounts/{social.ids['bob']}", f"/v1/accounts/{social.ids['mod']}"
    assert (await social.call("root", "PATCH", bob, json={"disabled": True})).status_code == 200
    assert (await social.call("root", "PATCH", mod, json={"role": "member"})).status_code == 200

    for who in ("bob", "mod"):
        answer = await social.call(who, "GET", "/v1/auth/me")
        assert answer.status_code == 401, answer.text
        assert "session ended" in answer.headers["www-authenticate"]
    deleted = await social.call("mod", "DELETE", f"/v1/posts/{post['id']}")
    assert deleted.status_code == 401  # no longer a moderator's
    assert (await social.call("ada", "GET", "/v1/auth/me")).status_code == 200


async def test_a_refresh_token_raced_by_many_requests_rotates_at_most_once(
    social: Social,
) -> None:
    token = (await token_pair(social.client, "bob@example.com")).json()["refresh_token"]
    answers = await asyncio.gather(*(refresh(social.client, token) for _ in range(6)))
    rotated = [a for a in answers if a.status_code == 200]
    assert len(rotated) <= 1, [a.status_code for a in answers]
    assert {a.json()["error"] for a in answers if a.status_code != 200} == {"invalid_grant"}
    for answer in rotated:  # the reuse ended the family: the winner's token is dead too
        assert (await refresh(social.client, answer.json()["refresh_token"])).status_code == 400


async def test_an_invitation_is_for_its_email_and_used_once(make_api: Any) -> None:
    design = SOCIAL.replace("signup: open", "signup: invite")
    social = Social(await make_api(design))
    await social.people("root")
    made = await social.call("root", "POST", "/v1/auth/invites", json={"email": "Kim@example.com"})
    assert made.status_code == 201
    code = made.json()["code"]
    assert made.headers["cache-control"] == "no-store"

    def signup(email: str, handle: str, invite: str | None = code) -> Any:
        body = {"email": email, "password": PASSWORD, "handle": handle, "invite": invite}
        return social.client.post("/v1/auth/signup", json=body)

    assert (await signup("kim@example.com", "kim", None)).status_code == 422
    assert (await signup("lee@example.com", "lee")).status_code == 422  # someone else's
    assert (await signup("kim@example.com", "kim", "not-a-real-code")).status_code == 422
    answers = await asyncio.gather(*(signup("kim@example.com", f"kim{i}") for i in range(4)))
    statuses = sorted(a.status_code for a in answers)
    assert statuses[0] == 201, statuses  # one wins; the others find the email or code taken
    assert set(statuses[1:]) <= {409, 422}, statuses
    assert (await signup("kim@example.com", "kim9")).status_code in (409, 422)
    found = await social.call("root", "GET", '/v1/accounts?filter=handle ~ "kim"')
    assert [r["role"] for r in found.json()["data"]] == ["member"]


# --- API3: broken object property level authorization ----------------------------------------


SERVER_MANAGED: dict[str, Any] = {
    "author": "{ada}",
    "id": "0190a7c4-5b6e-7f00-8a1b-2c3d4e5f6a7b",
    "version": 7,
    "created_at": "2020-01-01T00:00:00Z",
    "updated_at": "2020-01-01T00:00:00Z",
    "like_count": 1000,
    "comment_count": 0,
}


async def test_a_post_setting_a_server_managed_field_is_a_422_naming_it(social: Social) -> None:
    post = await social.post("bob", "posts", {"body": "mine"})
    for field, value in SERVER_MANAGED.items():
        value = social.ids["ada"] if value == "{ada}" else value
        created = await social.call("bob", "POST", "/v1/posts", json={"body": "x", field: value})
        assert created.status_code == 422, created.text
        assert problem_fields(created) == [field]
        url = f"/v1/posts/{post['id']}"
        patched = await social.call("bob", "PATCH", url, json={field: value})
        assert patched.status_code == 422, patched.text
        assert problem_fields(patched) == [field]
    everything = {"body": "x", **SERVER_MANAGED, "author": social.ids["ada"]}
    refused = await social.call("bob", "POST", "/v1/posts", json=everything)
    assert sorted(problem_fields(refused)) == sorted(SERVER_MANAGED)
    assert await social.api.count_rows("posts") == 1
    assert (await social.call("bob", "GET", f"/v1/posts/{post['id']}")).json()["version"] == 1


async def test_account_fields_an_admin_keeps_are_422_for_members(social: Social) -> None:
    url = f"/v1/accounts/{social.ids['bob']}"
    for body in ({"role": "admin"}, {"email_verified": True}, {"follower_count": 10**6}):
        refused = await social.call("bob", "PATCH", url, json=body)
        assert refused.status_code == 422, refused.text
        assert problem_fields(refused) == list(body)
    me = (await social.call("bob", "GET", "/v1/auth/me")).json()
    assert (me["role"], me["email_verified"], me["follower_count"]) == ("member", False, 0)
    email = await social.call("bob", "PATCH", url, json={"email": "bob@evil.example"})
    assert problem_fields(email) == ["email"]
    made = {"email": "new@example.com", "handle": "newbie", "email_verified": True}
    refused = await social.call("root", "POST", "/v1/accounts", json=made)
    assert refused.status_code == 422  # not even an admin: only a provider proves an email
    assert problem_fields(refused) == ["email_verified"]
    promoted = await social.call("root", "PATCH", url, json={"role": "moderator"})
    assert promoted.status_code == 200
    assert promoted.json()["role"] == "moderator"


async def test_signup_refuses_fields_that_are_not_the_newcomers_to_set(social: Social) -> None:
    body = {"email": "mallory@example.com", "password": PASSWORD, "handle": "mallory"}
    extra: dict[str, Any] = {
        "role": "admin",
        "email_verified": True,
        "disabled": False,
        "id": str(uuid.uuid4()),
        "post_count": 5,
    }
    for field, value in extra.items():
        refused = await social.client.post("/v1/auth/signup", json={**body, field: value})
        assert refused.status_code == 422, refused.text
        assert field in problem_fields(refused)
    assert (await social.client.post("/v1/auth/signup", json=body)).status_code == 201
    found = (await social.client.get('/v1/accounts?filter=handle == "mallory"')).json()
    assert [(r["role"], r["email_verified"]) for r in found["data"]] == [("member", False)]


async def test_an_email_is_hidden_from_others_on_get_list_and_expand(social: Social) -> None:
    post = await social.post("ada", "posts", {"body": "hello"})
    private = ("email", "disabled")
    for who in ("bob", None):
        account = (await social.call(who, "GET", f"/v1/accounts/{social.ids['ada']}")).json()
        assert account["handle"] == "ada"
        assert not set(private) & set(account)
        picked = await social.call(who, "GET", f"/v1/accounts/{social.ids['ada']}?fields=email")
        assert "email" not in picked.json()
        expanded = await social.call(who, "GET", f"/v1/posts/{post['id']}?expand=author")
        assert expanded.json()["author"]["handle"] == "ada"
        assert not set(private) & set(expanded.json()["author"])
        listed = (await social.call(who, "GET", "/v1/accounts?limit=100")).json()["data"]
        shown = {r["handle"] for r in listed if "email" in r}
        assert shown == ({"bob"} if who == "bob" else set())
        feed = (await social.call(who, "GET", "/v1/posts?expand=author")).json()["data"]
        assert all("email" not in p["author"] for p in feed)
    own = (await social.call("ada", "GET", f"/v1/posts/{post['id']}?expand=author")).json()
    assert own["author"]["email"] == "ada@example.com"
    admin = (await social.call("root", "GET", "/v1/accounts?limit=100")).json()["data"]
    assert all("@example.com" in r["email"] for r in admin)


HIDDEN_FIELD_PROBES = [
    ("filter", 'email == "ada@example.com"'),
    ("filter", 'email ~ "ada"'),
    ("filter", 'handle == "ada" or email > "a"'),
    ("filter", "not (disabled == false)"),
    ("sort", "email"),
    ("sort", "-disabled,handle"),
]


async def test_filtering_or_sorting_on_a_hidden_field_is_a_400(social: Social) -> None:
    for name, value in HIDDEN_FIELD_PROBES:
        for who in ("ada", "bob", None):  # not even one's own: the rule hides it on other rows
            refused = await social.call(who, "GET", "/v1/accounts", params={name: value})
            assert refused.status_code == 400, (name, value, refused.text)
        allowed = await social.call("root", "GET", "/v1/accounts", params={name: value})
        assert allowed.status_code == 200, allowed.text


VAULT = """
charpente: 1
name: vault
api_version: 1
auth: {roles: [member, admin]}
resources:
  keys:
    access:
      read: owner == auth.id
      create: owner == auth.id
      update: owner == auth.id
      delete: owner == auth.id
    fields:
      owner: {ref: accounts, default: auth.id, immutable: true}
      label: {type: string, required: true, max_length: 50}
      secret: {type: string, writeonly: true, max_length: 200}
  uses:
    access: {read: true, create: auth != null}
    fields:
      key: {ref: keys, required: true}
"""


async def test_a_writeonly_field_is_never_returned(make_api: Any) -> None:
    api = await make_api(VAULT)
    ann = await api.sign_in("ann@example.com")
    client = api.client
    body = {"label": "prod", "secret": "s3cr3t-value"}
    created = await client.post("/v1/keys", json=body, headers={**ann, "Idempotency-Key": "k1"})
    assert created.status_code == 201, created.text
    key = created.json()
    url = f"/v1/keys/{key['id']}"
    replay = await client.post("/v1/keys", json=body, headers={**ann, "Idempotency-Key": "k1"})
    use = await client.post("/v1/uses", json={"key": key["id"]}, headers=ann)
    answers = [
        created,
        replay,
        await client.get(url, headers=ann),
        await client.get("/v1/keys", headers=ann),
        await client.patch(url, json={"secret": "rotated-value"}, headers=ann),
        await client.get(f"/v1/uses/{use.json()['id']}?expand=key", headers=ann),
        await client.get("/v1/uses?expand=key", headers=ann),
    ]
    for answer in answers:
        assert answer.status_code in (200, 201), answer.text
        assert "s3cr3t" not in answer.text
        assert "rotated" not in answer.text
        assert '"secret"' not in answer.text
    for name, value in (
        ("fields", "id,secret"),
        ("filter", 'secret == "s3cr3t-value"'),
        ("sort", "secret"),
    ):
        probe = await client.get("/v1/keys", params={name: value}, headers=ann)
        assert probe.status_code == 400, (name, probe.text)
    as_admin = await api.sign_in("root@example.com", "admin")
    assert "secret" not in (await client.get(url, headers=as_admin)).json()


# --- API4: unrestricted resource consumption -------------------------------------------------

LIMITED = """
charpente: 1
name: limited
api_version: 1
resources:
  notes:
    access: {read: true, create: auth != null}
    limits:
      create: 2/minute per account
      read: 3/minute per ip
    fields:
      text: {type: string, required: true, max_length: 100}
"""


def assert_edge_headers(answer: httpx.Response) -> None:
    """What every answer carries, errors and early refusals included."""
    assert answer.headers["x-request-id"]
    assert answer.headers["x-content-type-options"] == "nosniff"
    assert answer.headers["x-frame-options"] == "DENY"
    assert "default-src 'none'" in answer.headers["content-security-policy"]


def assert_limited(answer: httpx.Response, name: str) -> None:
    assert answer.status_code == 429, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    assert int(answer.headers["retry-after"]) >= 1
    assert answer.headers["ratelimit-policy"].startswith(f'"{name}";')
    assert answer.headers["ratelimit"].startswith(f'"{name}";r=0;')
    assert answer.json()["status"] == 429
    assert_edge_headers(answer)


async def test_a_design_limit_answers_429_with_retry_after_and_ratelimit_headers(
    make_api: Any,
) -> None:
    api = await make_api(LIMITED, limiter=MemoryLimiter())
    ann = await api.sign_in("ann@example.com")
    bob = await api.sign_in("bob@example.com")
    made = [await api.client.post("/v1/notes", json={"text": "x"}, headers=ann) for _ in range(3)]
    assert [m.status_code for m in made] == [201, 201, 429]
    assert made[0].headers["ratelimit-policy"] == '"notes.create";q=2;w=60'
    assert_limited(made[2], "notes.create")
    assert (await api.client.post("/v1/notes", json={"text": "x"}, headers=bob)).status_code == 201
    assert await api.count_rows("notes") == 3

    reads = [await api.client.get("/v1/notes") for _ in range(4)]
    assert [r.status_code for r in reads] == [200, 200, 200, 429]
    assert_limited(reads[3], "notes.read")


def peer_client(api: Any, ip: str) -> httpx.AsyncClient:
    """Another client of the same app, from another address."""
    app = api.client._transport.app
    transport = httpx.ASGITransport(app=app, client=(ip, 50_000))
    return httpx.AsyncClient(transport=transport, base_url="http://test")


async def test_the_token_endpoint_allows_20_attempts_a_minute_per_ip(make_api: Any) -> None:
    api = await make_api(SOCIAL, limiter=MemoryLimiter())
    await api.sign_in("ann@example.com", handle="ann")
    form = {"grant_type": "password", "username": "ann@example.com", "password": "guess"}
    async with (
        peer_client(api, "203.0.113.5") as attacker,
        peer_client(api, "198.51.100.7") as other,
    ):
        tries = [await attacker.post("/v1/auth/token", data=form) for _ in range(20)]
        assert {t.status_code for t in tries} == {400}
        spoofed = {"X-Forwarded-For": "192.0.2.1"}  # no trusted proxy: the header is ignored
        refused = await attacker.post("/v1/auth/token", data=form, headers=spoofed)
        assert_limited(refused, "auth")
        right = {**form, "password": PASSWORD}
        assert_limited(await attacker.post("/v1/auth/token", data=right), "auth")
        signup = {"email": "x@example.com", "password": PASSWORD, "handle": "xx_x"}
        assert_limited(await attacker.post("/v1/auth/signup", json=signup), "auth")
        assert (await other.post("/v1/auth/token", data=right)).status_code == 200


async def test_a_page_size_beyond_100_or_not_a_count_is_refused(social: Social) -> None:
    for limit in ("101", "1000000", "0", "-1", "1e3", "ten", "9" * 40):
        refused = await social.call("bob", "GET", "/v1/posts", params={"limit": limit})
        assert refused.status_code == 422, refused.text
        assert problem_fields(refused) == ["limit"]
    assert (await social.call("bob", "GET", "/v1/posts?limit=100")).status_code == 200


async def test_a_body_over_the_limit_is_a_413_before_it_is_read(make_api: Any) -> None:
    api = await make_api(SOCIAL, max_body_bytes=2048)
    ann = await api.sign_in("ann@example.com", handle="ann")
    big = {"body": "x" * 4000}
    assert (await api.client.post("/v1/posts", json=big, headers=ann)).status_code == 413

    async def chunks() -> Any:
        for _ in range(10):
            yield b'{"body": "' + b"x" * 1000

    streamed = await api.client.post(
        "/v1/posts", content=chunks(), headers={**ann, "Content-Type": "application/json"}
    )
    assert streamed.status_code == 413
    signup = {"email": "x@example.com", "password": "p" * 4000, "handle": "xxx"}
    answer = await api.client.post("/v1/auth/signup", json=signup)
    assert answer.status_code == 413
    assert_edge_headers(answer)
    token = {"grant_type": "password", "username": "ann@example.com", "password": "p" * 4000}
    assert (await api.client.post("/v1/auth/token", data=token)).status_code == 413
    assert await api.count_rows("posts") == 0


OVERSIZED_FILTERS = {
    "long": 'body == "' + "x" * 5000 + '"',
    "deep parentheses": "(" * 40 + 'body == "x"' + ")" * 40,
    "long chain": " and ".join(['body == "x"'] * 40),
    "deep not": "not " * 40 + 'body == "x"',
    "long list": "body in [" + ", ".join(f'"{i}"' for i in range(101)) + "]",
}


async def test_an_oversized_filter_is_a_400(social: Social) -> None:
    for name, text in OVERSIZED_FILTERS.items():
        refused = await social.call("bob", "GET", "/v1/posts", params={"filter": text})
        assert refused.status_code == 400, (name, refused.text)
        assert len(refused.content) < 2000, name


GLOBAL_LIMIT = SOCIAL.replace("api_version: 1", 'api_version: 1\nlimits: {all: "5/minute per ip"}')


async def test_requests_with_bad_tokens_count_against_the_limits(make_api: Any) -> None:
    api = await make_api(GLOBAL_LIMIT, limiter=MemoryLimiter())
    forged = bearer(forge({"alg": "none", "typ": "JWT"}, {"sub": "x"}))
    statuses = [(await api.client.get("/v1/posts", headers=forged)).status_code for _ in range(8)]
    assert statuses == [401] * 5 + [429] * 3


# --- API5: broken function level authorization -----------------------------------------------

ADMIN_ONLY = (
    SOCIAL
    + """
  audit:
    fields:
      note: {type: string, required: true}
"""
)


async def test_a_resource_without_access_rules_is_for_admins_only(make_api: Any) -> None:
    social = Social(await make_api(ADMIN_ONLY))
    await social.people("bob", "mod", "root")
    entry = await social.post("root", "audit", {"note": "kept"})
    url = f"/v1/audit/{entry['id']}"
    for who, status in ((None, 401), ("bob", 403), ("mod", 403)):
        assert (await social.call(who, "GET", "/v1/audit")).status_code == status
        created = await social.call(who, "POST", "/v1/audit", json={"note": "x"})
        assert created.status_code == status
        assert (await social.call(who, "GET", url)).status_code == (401 if who is None else 404)
        assert (await social.call(who, "PATCH", url, json={"note": "y"})).status_code == status
        assert (await social.call(who, "DELETE", url)).status_code == status
    assert ids_of(await social.call("root", "GET", "/v1/audit")) == [entry["id"]]
    assert (await social.call("root", "DELETE", url)).status_code == 204


async def test_members_cannot_create_accounts_nor_invite(social: Social) -> None:
    account = {"email": "new@example.com", "handle": "newbie"}
    invite = {"email": "friend@example.com", "role": "admin"}
    for who, status in ((None, 401), ("bob", 403), ("mod", 403)):
        made = await social.call(who, "POST", "/v1/accounts", json=account)
        assert made.status_code == status, made.text
        invited = await social.call(who, "POST", "/v1/auth/invites", json=invite)
        assert invited.status_code == status, invited.text
        assert "code" not in invited.json()
    assert (await social.call("root", "POST", "/v1/accounts", json=account)).status_code == 201
    assert (await social.call("root", "POST", "/v1/auth/invites", json=invite)).status_code == 201


async def test_a_moderator_deletes_a_post_but_cannot_edit_it(social: Social) -> None:
    post = await social.post("ada", "posts", {"body": "rude"})
    url = f"/v1/posts/{post['id']}"
    assert (await social.call("mod", "PATCH", url, json={"body": "nice"})).status_code == 403
    assert (await social.call("bob", "DELETE", url)).status_code == 403
    assert (await social.call("mod", "DELETE", url)).status_code == 204


async def test_methods_the_api_does_not_have_are_405(social: Social) -> None:
    post = await social.post("ada", "posts", {"body": "hello"})
    for method, url in (("PUT", f"/v1/posts/{post['id']}"), ("DELETE", "/v1/posts")):
        answer = await social.call("root", method, url, json={"body": "x"})
        assert answer.status_code == 405
        assert_edge_headers(answer)


# --- API8: security misconfiguration ---------------------------------------------------------

CORS = SOCIAL.replace("api_version: 1", "api_version: 1\ncors: {origins: [https://app.example]}")


def preflight(origin: str) -> dict[str, str]:
    return {
        "Origin": origin,
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, content-type",
    }


async def test_cors_allows_the_designs_origins_and_no_other(make_api: Any) -> None:
    api = await make_api(CORS)
    allowed = await api.client.options("/v1/posts", headers=preflight("https://app.example"))
    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == "https://app.example"
    assert "authorization" in allowed.headers["access-control-allow-headers"].lower()
    for origin in ("https://evil.example", "https://app.example.evil.example", "null"):
        refused = await api.client.options("/v1/posts", headers=preflight(origin))
        assert refused.status_code == 400
        assert "access-control-allow-origin" not in refused.headers
        simple = await api.client.get("/v1/posts", headers={"Origin": origin})
        assert simple.status_code == 200
        assert "access-control-allow-origin" not in simple.headers
    read = await api.client.get("/v1/posts", headers={"Origin": "https://app.example"})
    assert read.headers["access-control-allow-origin"] == "https://app.example"
    assert "etag" in read.headers["access-control-expose-headers"].lower()


async def test_without_a_cors_block_no_origin_is_allowed(make_api: Any) -> None:
    api = await make_api(SOCIAL)
    answer = await api.client.options("/v1/posts", headers=preflight("https://app.example"))
    assert "access-control-allow-origin" not in answer.headers
    read = await api.client.get("/v1/posts", headers={"Origin": "https://app.example"})
    assert "access-control-allow-origin" not in read.headers


def test_any_origin_with_credentials_is_a_design_error() -> None:
    design = SOCIAL.replace(
        "api_version: 1", "api_version: 1\ncors: {origins: ['*'], credentials: true}"
    )
    with pytest.raises(DesignError) as raised:
        load_design_text(design, "social.yaml")
    [problem] = [p for p in raised.value.problems if p.severity == "error"]
    assert "credentials" in problem.message
    assert (problem.file, problem.line) == ("social.yaml", 18)


async def test_early_refusals_carry_the_request_id_and_security_headers(make_api: Any) -> None:
    api = await make_api(LIMITED, limiter=MemoryLimiter(), max_body_bytes=1024)
    answers = [
        await api.client.get("/v1/notes", headers={"Authorization": "Bearer nope"}),
        await api.client.post("/v1/notes", json={"text": "x"}),
        await api.client.get(f"/v1/notes/{uuid.uuid4()}"),
        await api.client.get("/v1/nothing"),
        await api.client.post("/v1/notes", content=b"x" * 2000),
        *[await api.client.get("/v1/notes") for _ in range(3)],
    ]
    statuses = [a.status_code for a in answers]
    # the bad-token read and the 404 read count too
    assert statuses == [401, 401, 404, 404, 413, 200, 429, 429]
    for answer in answers:
        assert_edge_headers(answer)
    echoed = await api.client.get("/v1/notes", headers={"X-Request-ID": "trace-42"})
    assert echoed.headers["x-request-id"] == "trace-42"
    forged = await api.client.get("/v1/notes", headers={"X-Request-ID": "a\r\nSet-Cookie: x"})
    assert forged.headers["x-request-id"] != "a\r\nSet-Cookie: x"


async def test_errors_show_no_internals_and_token_answers_are_not_cached(social: Social) -> None:
    bad_json = await social.call(
        "bob", "POST", "/v1/posts", content=b"{", headers={"Content-Type": "application/json"}
    )
    assert bad_json.status_code == 400
    for answer in (bad_json, await social.call("bob", "GET", "/v1/posts?filter=(((")):
        assert "Traceback" not in answer.text
        assert "sqlalchemy" not in answer.text.lower()
        assert "server" not in {k.lower() for k in answer.headers} or "uvicorn" not in answer.text
    pair = await token_pair(social.client, "bob@example.com")
    failed = await token_pair(social.client, "bob@example.com", "wrong one, clearly")
    for answer in (pair, failed):
        assert answer.headers["cache-control"] == "no-store"


# --- API4 across processes: one Redis, two servers, one budget -------------------------------

REDIS_URL = os.environ.get("CHARPENTE_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
START_TIMEOUT = 30.0


@pytest.fixture
def shared_redis() -> Iterator[tuple[str, str]]:
    """The Redis URL and a resource name of this test's own (so its limit keys are new);
    the keys are deleted afterwards."""
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1, socket_timeout=1)
    try:
        client.ping()
    except redis.RedisError as exc:
        client.close()
        service_missing("Redis", f"{type(exc).__name__}: {exc}")
    name = f"notes_{uuid.uuid4().hex[:12]}"
    try:
        yield REDIS_URL, name
    finally:
        keys = list(client.scan_iter(match=f"charpente:rl:{name}.*"))
        if keys:
            client.delete(*keys)
        client.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def start_server(environ: dict[str, str], cwd: Path, *options: str) -> tuple[Any, str]:
    port = free_port()
    command = [sys.executable, "-c", "from charpente.cli.main import main; main()", "serve"]
    process = subprocess.Popen(
        [*command, *options, "--host", "127.0.0.1", "--port", str(port), "--drain-seconds", "0"],
        env=environ,
        cwd=cwd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            logs = process.stderr.read().decode() if process.stderr else ""
            raise AssertionError(f"the server exited with {process.returncode}: {logs}")
        try:
            if httpx.get(f"{base}/healthz", timeout=0.5).status_code == 200:
                return process, base
        except httpx.TransportError:
            time.sleep(0.05)
    process.kill()
    raise AssertionError("the server did not answer /healthz in time")


def stop_server(process: Any) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=5)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def test_two_server_processes_share_one_rate_limit_through_redis(
    shared_redis: tuple[str, str], tmp_path: Path
) -> None:
    redis_url, name = shared_redis
    design = tmp_path / "design.yaml"
    design.write_text(
        f"""
charpente: 1
name: shared
api_version: 1
resources:
  {name}:
    access: {{read: true}}
    limits: {{read: 5/minute per ip}}
    fields:
      text: {{type: string}}
"""
    )
    environ = {
        **os.environ,
        "CHARPENTE_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'shared.db'}",
        "CHARPENTE_DESIGN": str(design),
        "CHARPENTE_REDIS_URL": redis_url,
        "CHARPENTE_LOG_LEVEL": "warning",
    }
    first, first_base = start_server(environ, tmp_path, "--migrate")
    try:
        second, second_base = start_server(environ, tmp_path)
        try:
            bases = [first_base, second_base] * 4
            answers = [httpx.get(f"{base}/v1/{name}", timeout=5) for base in bases]
        finally:
            stop_server(second)
    finally:
        stop_server(first)
    assert [a.status_code for a in answers] == [200] * 5 + [429] * 3
    for answer in answers[5:]:
        assert answer.headers["ratelimit-policy"] == f'"{name}.read";q=5;w=60'
        assert int(answer.headers["retry-after"]) >= 1
