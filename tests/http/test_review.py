"""Entity tags over expanded records, idempotency key scope, query strings on writes."""

from __future__ import annotations

from typing import Any

import pytest
from starlette.requests import Request
from starlette.types import Message, Receive, Scope, Send

from charpente.http.app import build_app
from charpente.http.middleware import RequestContextMiddleware
from charpente.http.problems import log_unexpected


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


@pytest.mark.anyio
@pytest.mark.parametrize("method", ["POST", "PATCH", "DELETE"])
async def test_a_write_with_a_query_parameter_answers_400_naming_it(api: Any, method: str) -> None:
    user = await api.create("users", {"handle": "ada"})
    url = "/v1/users?dry_run=1" if method == "POST" else f"/v1/users/{user['id']}?dry_run=1"
    response = await api.client.request(method, url, json={"handle": "bob"})
    assert response.status_code == 400
    assert "dry_run" in response.json()["detail"]
    assert await api.count_rows("users") == 1
    assert (await api.client.get(f"/v1/users/{user['id']}")).json()["handle"] == "ada"


@pytest.mark.anyio
async def test_a_bug_logs_its_path_escaped_so_it_cannot_forge_log_lines(
    api: Any, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken(*args: Any, **kwargs: Any) -> Any:
        raise ZeroDivisionError("bug")

    monkeypatch.setattr(api.service, "get", broken)
    response = await api.client.get("/v1/users/x%0AINFO%20forged")
    assert response.status_code == 500
    logged = [r.getMessage() for r in caplog.records if r.name == "charpente.errors"]
    assert logged
    assert "\n" not in logged[0]
    assert "\\n" in logged[0]


def test_log_unexpected_escapes_control_characters_in_the_path(
    caplog: pytest.LogCaptureFixture,
) -> None:
    log_unexpected(ValueError("bug"), "/v1/a\r\nforged line", "rid")
    message = caplog.records[-1].getMessage()
    assert "\n" not in message
    assert "\r" not in message


async def _disconnect_while_sending(app: Any, path: str) -> list[Message]:
    sent: list[Message] = []
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", b"test"), (b"content-type", b"application/json")],
        "server": ("test", 80),
        "client": ("127.0.0.1", 1),
    }
    messages = iter(
        [{"type": "http.request", "body": b'{"handle"', "more_body": True}],
    )

    async def receive() -> Message:
        return next(messages, {"type": "http.disconnect"})

    async def send(message: Message) -> None:
        sent.append(message)

    await app(scope, receive, send)
    return sent


@pytest.mark.anyio
async def test_a_client_leaving_while_sending_its_body_is_no_bug(
    api: Any, caplog: pytest.LogCaptureFixture
) -> None:
    app = build_app(api.service, api.design)
    sent = await _disconnect_while_sending(app, "/v1/users")
    assert not [m for m in sent if m["type"] == "http.response.start"]
    assert not [r for r in caplog.records if r.name == "charpente.errors"]
    assert await api.count_rows("users") == 0


@pytest.mark.anyio
async def test_the_middleware_ends_a_request_whose_client_left_without_a_bug_log(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def reads_body(scope: Scope, receive: Receive, send: Send) -> None:
        await Request(scope, receive).body()

    sent = await _disconnect_while_sending(RequestContextMiddleware(reads_body), "/other")
    assert not [m for m in sent if m["type"] == "http.response.start"]
    assert not [r for r in caplog.records if r.name == "charpente.errors"]


@pytest.mark.anyio
async def test_the_entity_tag_of_an_expanded_get_serves_as_if_match(api: Any) -> None:
    author = await api.create("users", {"handle": "ada"})
    post = await api.create("posts", {"author": author["id"], "title": "t"})
    url = f"/v1/posts/{post['id']}"
    etag = (await api.client.get(f"{url}?expand=author")).headers["etag"]
    patched = await api.client.patch(url, json={"title": "u"}, headers={"If-Match": etag})
    assert patched.status_code == 200
    stale = await api.client.patch(url, json={"title": "v"}, headers={"If-Match": etag})
    assert stale.status_code == 412
