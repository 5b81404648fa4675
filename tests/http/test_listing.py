"""Listing: keyset pages, expand without N+1, fields, count, counters, on every dialect."""

from __future__ import annotations

import base64
import json
import urllib.parse
from typing import Any

import pytest

from charpente.compile.plan import GetQuery, ListQuery, Page, Record
from charpente.design.model import Design
from charpente.loader import load_design_text
from charpente.runtime.service import Service


async def _blog(api: Any, posts: int) -> dict[str, Any]:
    ada = await api.create("users", {"handle": "ada"})
    bob = await api.create("users", {"handle": "bob"})
    made = []
    for i in range(posts):
        body = {"author": ada["id"], "editor": bob["id"], "title": f"p{i:03}", "score": i % 4}
        made.append(await api.create("posts", body))
    return {"ada": ada, "bob": bob, "posts": made}


async def _walk(api: Any, url: str, during: Any = None) -> list[dict[str, Any]]:
    """Every record of a collection, following Link headers page by page."""
    seen: list[dict[str, Any]] = []
    while url:
        response = await api.client.get(url)
        assert response.status_code == 200, response.text
        page = response.json()
        seen.extend(page["data"])
        link = response.headers.get("link")
        assert (link is None) == (page["page"]["next_cursor"] is None)
        url = link[1 : link.index(">")] if link else ""
        if during is not None:
            await during()
    return seen


@pytest.mark.anyio
@pytest.mark.parametrize("sort", ["", "-score", "score,-title", "-created_at", "editor,title"])
async def test_keyset_paging_returns_every_record_once(api, sort: str) -> None:
    made = await _blog(api, 23)
    query = urllib.parse.urlencode({"limit": 5, **({"sort": sort} if sort else {})})
    seen = await _walk(api, f"/v1/posts?{query}")
    ids = [r["id"] for r in seen]
    assert len(ids) == len(set(ids)) == 23
    assert set(ids) == {p["id"] for p in made["posts"]}


@pytest.mark.anyio
async def test_keyset_paging_is_stable_under_inserts(api) -> None:
    made = await _blog(api, 15)
    extra: list[str] = []

    async def insert_one() -> None:
        body = {"author": made["ada"]["id"], "title": f"new{len(extra)}", "score": 1}
        extra.append((await api.create("posts", body))["id"])

    seen = await _walk(api, "/v1/posts?limit=4&sort=-score", during=insert_one)
    ids = [r["id"] for r in seen]
    assert len(ids) == len(set(ids))
    assert {p["id"] for p in made["posts"]} <= set(ids)


@pytest.mark.anyio
async def test_the_next_link_keeps_the_other_parameters(api) -> None:
    await _blog(api, 3)
    response = await api.client.get("/v1/posts?limit=2&sort=-score&fields=id,score")
    link = response.headers["link"]
    assert link.endswith('>; rel="next"')
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(link[1 : link.index(">")]).query)
    assert query["sort"] == ["-score"]
    assert query["fields"] == ["id,score"]
    assert query["cursor"] == [response.json()["page"]["next_cursor"]]


@pytest.mark.anyio
async def test_expand_costs_the_same_number_of_statements_whatever_the_page_size(api) -> None:
    await _blog(api, 30)
    counts = []
    for limit in (2, 10, 30):
        api.statements.clear()
        response = await api.client.get(f"/v1/posts?limit={limit}&expand=author,editor")
        assert response.status_code == 200
        assert len(response.json()["data"]) == limit
        counts.append(len(api.statements))
    assert counts[0] == counts[1] == counts[2]
    assert counts[0] <= 3  # the page, then one batch per expanded field


@pytest.mark.anyio
async def test_expand_inlines_the_referenced_records(api) -> None:
    made = await _blog(api, 2)
    response = await api.client.get("/v1/posts?expand=author&fields=title")
    rows = response.json()["data"]
    assert all(set(r) == {"title", "author"} for r in rows)
    assert rows[0]["author"]["handle"] == "ada"
    assert "secret" not in rows[0]["author"]
    item = await api.client.get(f"/v1/posts/{made['posts'][0]['id']}?expand=editor")
    assert item.json()["editor"]["id"] == made["bob"]["id"]
    assert item.headers["etag"].startswith('"1-')  # the version, then the expanded records'


@pytest.mark.anyio
async def test_a_null_ref_expands_to_null(api) -> None:
    made = await _blog(api, 1)
    await api.client.patch(f"/v1/posts/{made['posts'][0]['id']}", json={"editor": None})
    response = await api.client.get("/v1/posts?expand=editor,author")
    row = response.json()["data"][0]
    assert row["editor"] is None
    assert row["author"]["id"] == made["ada"]["id"]


@pytest.mark.anyio
async def test_fields_trims_records_but_not_the_etag(api) -> None:
    made = await _blog(api, 1)
    post_id = made["posts"][0]["id"]
    response = await api.client.get(f"/v1/posts/{post_id}?fields=title")
    assert response.json() == {"title": "p000"}
    assert response.headers["etag"] == '"1"'
    listed = await api.client.get("/v1/posts?fields=id,score")
    assert listed.json()["data"] == [{"id": post_id, "score": 0}]


@pytest.mark.anyio
async def test_count_exact_adds_the_total(api) -> None:
    await _blog(api, 7)
    response = await api.client.get("/v1/posts?limit=2&count=exact&filter=score%20%3E%3D%202")
    assert response.json()["page"] == {
        "limit": 2,
        "next_cursor": response.json()["page"]["next_cursor"],
        "total": 3,
    }
    assert "total" not in (await api.client.get("/v1/posts")).json()["page"]


@pytest.mark.anyio
async def test_a_writeonly_field_is_never_returned(api) -> None:
    user = await api.create("users", {"handle": "ada", "secret": "hunter2"})
    assert "secret" not in user
    assert "secret" not in (await api.client.get(f"/v1/users/{user['id']}")).json()
    assert "secret" not in (await api.client.get("/v1/users")).json()["data"][0]
    assert "hunter2" not in (await api.client.get("/v1/users")).text


@pytest.mark.anyio
async def test_counters_stay_exact_through_creates_moves_and_deletes(api) -> None:
    made = await _blog(api, 2)
    first, second = (p["id"] for p in made["posts"])
    likers = [await api.create("users", {"handle": f"u{i}"}) for i in range(5)]
    likes = [await api.create("likes", {"post": first, "user": u["id"]}) for u in likers]
    await api.client.patch(f"/v1/likes/{likes[0]['id']}", json={"post": second})
    await api.client.delete(f"/v1/likes/{likes[1]['id']}")

    async def like_count(post: str) -> int:
        return int((await api.client.get(f"/v1/posts/{post}")).json()["like_count"])

    assert (await like_count(first), await like_count(second)) == (3, 1)
    rows = await api.client.get(f"/v1/likes?filter=post%20%3D%3D%20%22{first}%22&count=exact")
    assert rows.json()["page"]["total"] == 3
    failed = await api.client.post("/v1/likes", json={"post": first, "user": likers[2]["id"]})
    assert failed.status_code == 409
    assert await like_count(first) == 3


class _DanglingDatabase:
    """A Database whose referenced records have vanished (as after a race with a delete)."""

    def __init__(self, design: Design) -> None:
        self.design = design
        self.batches: list[tuple[str, int]] = []

    async def select_page(self, query: ListQuery) -> Page:
        rows: list[Record] = [
            {"id": f"00000000-0000-7000-8000-00000000000{i}", "author": "gone", "version": 1}
            for i in range(3)
        ]
        return Page(rows, has_more=False)

    async def select_one(self, query: GetQuery) -> Record | None:
        return None

    async def select_by_ids(
        self, resource: str, ids: Any, fields: Any = None, where: Any = None
    ) -> list[Record]:
        self.batches.append((resource, len(ids)))
        return []


@pytest.mark.anyio
async def test_a_ref_to_a_deleted_record_expands_to_null_in_one_batch() -> None:
    design = load_design_text(
        "charpente: 1\nname: t\nresources:\n"
        "  users: {fields: {name: string}, access: {read: true}}\n"
        "  posts: {fields: {author: {ref: users}}, access: {read: true}}\n"
    )
    database = _DanglingDatabase(design)
    service = Service(design, database)  # type: ignore[arg-type]
    result = await service.list("posts", [("expand", "author")])
    assert [row["author"] for row in result.data] == [None, None, None]
    assert database.batches == [("users", 1)]


@pytest.mark.anyio
async def test_a_forged_cursor_with_a_null_id_answers_400(api) -> None:
    await _blog(api, 3)
    first = (await api.client.get("/v1/posts?limit=1")).json()["page"]["next_cursor"]
    signature, values = json.loads(base64.urlsafe_b64decode(first + "=" * (-len(first) % 4)))
    forged_text = json.dumps([signature, [*values[:-1], None]]).encode()
    forged = base64.urlsafe_b64encode(forged_text).rstrip(b"=").decode()
    response = await api.client.get(f"/v1/posts?limit=1&cursor={forged}")
    assert response.status_code == 400, response.text
    assert "cursor" in response.json()["detail"]
