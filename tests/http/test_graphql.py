"""POST/GET /v1/graphql on the blog design: the same reads, rules and writes as REST."""

from __future__ import annotations

import json
from typing import Any

import pytest
import sqlalchemy as sa

from charpente.errors import DesignError
from charpente.http.graphql import Limits
from charpente.loader import load_design_text
from charpente.runtime.caller import ANONYMOUS
from charpente.runtime.ratelimit import MemoryLimiter
from charpente.templates import template_text

pytestmark = pytest.mark.anyio


async def _gql(api: Any, query: str, variables: dict[str, Any] | None = None, **kw: Any) -> Any:
    response = await api.client.post(
        "/v1/graphql", json={"query": query, "variables": variables or {}}, **kw
    )
    assert response.headers["content-type"].startswith("application/json"), response.text
    return response.status_code, response.json()


async def _seed(api: Any) -> dict[str, Any]:
    ada = await api.create("users", {"handle": "ada", "secret": "s"})
    bob = await api.create("users", {"handle": "bob"})
    posts = [
        await api.create("posts", {"author": ada["id"], "title": f"p{i}", "score": i})
        for i in range(3)
    ]
    await api.create("likes", {"post": posts[0]["id"], "user": bob["id"]})
    await api.create("likes", {"post": posts[0]["id"], "user": ada["id"]})
    return {"ada": ada, "bob": bob, "posts": posts}


async def test_a_connection_reads_what_rest_reads(api: Any) -> None:
    await _seed(api)
    status, body = await _gql(
        api,
        """{ posts(first: 2, orderBy: "-score", where: "score >= 0") {
               totalCount pageInfo { hasNextPage endCursor }
               nodes { title score version author { handle } } } }""",
    )
    assert status == 200, body
    connection = body["data"]["posts"]
    rest = (await api.client.get("/v1/posts?limit=2&sort=-score&filter=score>=0")).json()
    assert [n["title"] for n in connection["nodes"]] == [r["title"] for r in rest["data"]]
    assert connection["nodes"][0] == {
        "title": "p2",
        "score": 2,
        "version": 1,
        "author": {"handle": "ada"},
    }
    assert connection["totalCount"] == 3
    assert connection["pageInfo"]["hasNextPage"] is True
    after = connection["pageInfo"]["endCursor"]
    status, body = await _gql(
        api,
        """query($after: String) {
             posts(first: 2, orderBy: "-score", after: $after) {
               nodes { title } pageInfo { hasNextPage } } }""",
        {"after": after},
    )
    assert body["data"]["posts"] == {"nodes": [{"title": "p0"}], "pageInfo": {"hasNextPage": False}}


async def test_relations_both_ways_are_read_one_query_per_ref_level(api: Any) -> None:
    seeded = await _seed(api)
    api.statements.clear()
    status, body = await _gql(
        api,
        """{ users(orderBy: "handle") { nodes { handle
               posts_by_author(orderBy: "score", first: 1) { nodes { title
                 likes(orderBy: "created_at") { nodes { user { handle } } } } } } } }""",
    )
    assert status == 200, body
    users = body["data"]["users"]["nodes"]
    assert users[0]["handle"] == "ada"
    first = users[0]["posts_by_author"]["nodes"][0]
    assert first["title"] == "p0"
    assert [n["user"]["handle"] for n in first["likes"]["nodes"]] == ["bob", "ada"]
    assert users[1] == {"handle": "bob", "posts_by_author": {"nodes": []}}
    assert seeded["ada"]["handle"] == "ada"


async def test_three_levels_cost_one_statement_per_level(api: Any) -> None:
    seeded = await _seed(api)
    api.statements.clear()
    status, body = await _gql(
        api,
        """{ posts(first: 20, orderBy: "score") { nodes { title author { handle }
               likes(first: 20, orderBy: "created_at") { totalCount nodes { user { handle } } }
               } } }""",
    )
    assert status == 200, body
    reads = [s for s in api.statements if s.lstrip().upper().startswith("SELECT")]
    # posts; their authors; the likes of every post (rows, then counts); the likes' users
    assert len(reads) <= 5, reads
    nodes = body["data"]["posts"]["nodes"]
    assert [n["title"] for n in nodes] == ["p0", "p1", "p2"]
    assert nodes[0]["likes"]["totalCount"] == 2
    assert [n["user"]["handle"] for n in nodes[0]["likes"]["nodes"]] == ["bob", "ada"]
    assert nodes[1]["likes"] == {"totalCount": 0, "nodes": []}
    assert seeded["posts"][0]["title"] == "p0"
    # the same page as REST gives for one post
    rest = await api.client.get(
        "/v1/likes", params={"filter": f'post == "{seeded["posts"][0]["id"]}"', "count": "exact"}
    )
    assert rest.json()["page"]["total"] == 2


async def test_a_nested_page_keeps_its_cursor(api: Any) -> None:
    await _seed(api)
    _, body = await _gql(
        api,
        """{ posts(first: 1, orderBy: "score") { nodes {
               likes(first: 1, orderBy: "created_at") {
                 nodes { user { handle } } pageInfo { hasNextPage endCursor } } } } }""",
    )
    likes = body["data"]["posts"]["nodes"][0]["likes"]
    assert likes["nodes"] == [{"user": {"handle": "bob"}}]
    assert likes["pageInfo"]["hasNextPage"] is True
    _, body = await _gql(
        api,
        """query($after: String) { posts(first: 1, orderBy: "score") { nodes {
               likes(first: 1, orderBy: "created_at", after: $after) {
                 nodes { user { handle } } pageInfo { hasNextPage } } } } }""",
        {"after": likes["pageInfo"]["endCursor"]},
    )
    again = body["data"]["posts"]["nodes"][0]["likes"]
    assert again == {"nodes": [{"user": {"handle": "ada"}}], "pageInfo": {"hasNextPage": False}}


async def test_one_record_by_id_and_a_missing_one(api: Any) -> None:
    seeded = await _seed(api)
    post = seeded["posts"][1]
    status, body = await _gql(
        api,
        """query($id: ID!) { post(id: $id) { id title __typename }
             none: post(id: "00000000-0000-0000-0000-000000000000") { id } }""",
        {"id": post["id"]},
    )
    assert status == 200, body
    assert body["data"] == {
        "post": {"id": post["id"], "title": "p1", "__typename": "Post"},
        "none": None,
    }


async def test_a_bad_filter_is_the_rest_problem_with_path_and_location(api: Any) -> None:
    status, body = await _gql(api, '{\n  posts(where: "nope == 1") { nodes { id } } }')
    assert status == 200
    assert body["data"] == {"posts": None}
    (error,) = body["errors"]
    assert error["path"] == ["posts"]
    assert error["locations"] == [{"line": 2, "column": 3}]
    assert error["extensions"]["type"] == "/problems/bad-request"
    assert error["extensions"]["code"] == "BAD_REQUEST"


async def test_an_invalid_document_is_refused_with_its_location(api: Any) -> None:
    status, body = await _gql(api, "{ posts { nodes { nope } } }")
    assert status == 400
    assert "nope" in body["errors"][0]["message"]
    assert body["errors"][0]["locations"]
    status, body = await _gql(api, "{ posts { ")
    assert status == 400
    assert body["errors"][0]["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"


async def test_a_fragment_cycle_and_a_depth_bomb_are_refused_before_any_sql(api: Any) -> None:
    api.statements.clear()
    cycle = "{ users { nodes { ...A } } } fragment A on User { ...B } fragment B on User { ...A }"
    status, body = await _gql(api, cycle)
    assert status == 400
    assert "A" in body["errors"][0]["message"]
    bomb = (
        "{ posts { nodes { "
        + "author { posts_by_author { nodes { " * 5
        + "id"
        + " } } }" * 5
        + " } } }"
    )
    status, body = await _gql(api, bomb)
    assert status == 400
    assert "deeper" in body["errors"][0]["message"]
    many = "{ " + " ".join(f"a{i}: posts {{ totalCount }}" for i in range(40)) + " }"
    status, body = await _gql(api, many)
    assert status == 400
    assert "aliases" in body["errors"][0]["message"]
    wide = """{ users(first: 100) { nodes { posts_by_author(first: 100) { nodes {
                likes(first: 100) { nodes { id } } } } } } }"""
    status, body = await _gql(api, wide)
    assert status == 400
    assert "records" in body["errors"][0]["message"]
    assert not [s for s in api.statements if "users" in s or "posts" in s]


async def test_mutations_go_through_the_rest_pipeline(api: Any) -> None:
    seeded = await _seed(api)
    ada = seeded["ada"]["id"]
    create = """mutation($input: PostInput!, $key: String) {
        createPost(input: $input, idempotencyKey: $key) { id title version author { handle } } }"""
    variables = {"input": {"author": ada, "title": "new", "score": 1}, "key": "k-1"}
    status, body = await _gql(api, create, variables)
    assert status == 200, body
    made = body["data"]["createPost"]
    assert made["author"] == {"handle": "ada"}
    again = await _gql(api, create, variables)
    assert again[1]["data"]["createPost"]["id"] == made["id"]
    assert await api.count_rows("posts") == 4
    # a declared check, as REST answers it
    status, body = await _gql(api, create, {"input": {"author": ada, "title": "x", "score": -1}})
    assert body["data"] == {"createPost": None}
    assert body["errors"][0]["extensions"]["type"] == "/problems/validation"
    assert body["errors"][0]["extensions"]["status"] == 422
    update = """mutation($id: ID!, $v: Int) {
        updatePost(id: $id, patch: {title: "renamed"}, expectedVersion: $v) { title version } }"""
    status, body = await _gql(api, update, {"id": made["id"], "v": 7})
    assert body["errors"][0]["extensions"]["type"] == "/problems/precondition-failed"
    status, body = await _gql(api, update, {"id": made["id"], "v": 1})
    assert body["data"]["updatePost"] == {"title": "renamed", "version": 2}
    history = (await api.client.get(f"/v1/posts/{made['id']}/history")).json()
    assert len(history["data"]) == 2
    status, body = await _gql(
        api, "mutation($id: ID!) { deletePost(id: $id, expectedVersion: 2) }", {"id": made["id"]}
    )
    assert body == {"data": {"deletePost": True}}
    assert (await api.client.get(f"/v1/posts/{made['id']}")).status_code == 404


async def test_get_runs_queries_only(api: Any) -> None:
    ok = await api.client.get("/v1/graphql", params={"query": "{ __typename }"})
    assert ok.json() == {"data": {"__typename": "Query"}}
    refused = await api.client.get(
        "/v1/graphql", params={"query": 'mutation { deleteNote(id: "x") }'}
    )
    assert refused.status_code == 400


async def test_the_schema_and_the_explorer_are_served(api: Any) -> None:
    sdl = await api.client.get("/v1/graphql/schema.graphql")
    assert "type Post {" in sdl.text
    assert "secret" not in sdl.text.split("input UserInput")[0]  # writeonly: never read
    page = await api.client.get("/graphql")
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert 'data-endpoint="/v1/graphql"' in page.text
    assert (await api.client.get("/docs/static/graphql.js")).status_code == 200


async def test_introspection_is_answered(api: Any) -> None:
    status, body = await _gql(api, '{ __type(name: "Post") { fields { name } } }')
    assert status == 200, body
    names = {f["name"] for f in body["data"]["__type"]["fields"]}
    assert {"id", "title", "author", "likes"} <= names


def test_limits_have_defaults() -> None:
    assert Limits().max_depth == 8


async def test_the_document_cache_is_bounded(api: Any) -> None:
    from charpente.http import graphql as module

    endpoint = module.GraphqlEndpoint(api.design, api.service)
    view = endpoint.view(ANONYMOUS)
    for i in range(module._MAX_DOCUMENTS + 20):
        endpoint.document(f"{{ a{i}: __typename }}", view)
    assert len(endpoint._documents) == module._MAX_DOCUMENTS


SOCIAL_NESTED = """query($where: String) { accounts(orderBy: "handle", where: $where) {
    nodes { handle email posts(orderBy: "created_at") { totalCount nodes { body } } } } }"""


async def test_nested_reads_keep_each_resources_rules(make_api: Any) -> None:
    api = await make_api(template_text("social"))
    ada = await api.sign_in("ada@example.com", handle="ada")
    bob = await api.sign_in("bob@example.com", handle="bob")
    for body, visibility in (("open", "public"), ("mine", "private")):
        made = await api.client.post(
            "/v1/posts", json={"body": body, "visibility": visibility}, headers=ada
        )
        assert made.status_code == 201, made.text
    where = {"where": 'handle in ["ada", "bob"]'}
    _, as_bob = await _gql(api, SOCIAL_NESTED, where, headers=bob)
    _, as_ada = await _gql(api, SOCIAL_NESTED, where, headers=ada)
    seen_by_bob = as_bob["data"]["accounts"]["nodes"]
    seen_by_ada = as_ada["data"]["accounts"]["nodes"]
    # bob sees ada's public post only, counted after the read rule; not her email
    assert seen_by_bob[0] == {
        "handle": "ada",
        "email": None,
        "posts": {"totalCount": 1, "nodes": [{"body": "open"}]},
    }
    assert seen_by_bob[1]["email"] == "bob@example.com"
    assert seen_by_ada[0]["posts"]["totalCount"] == 2
    assert seen_by_ada[0]["email"] == "ada@example.com"
    # the same as REST answers bob
    rest = await api.client.get(
        "/v1/posts", params={"filter": f'author == "{api.ids["ada@example.com"]}"'}, headers=bob
    )
    assert [p["body"] for p in rest.json()["data"]] == ["open"]
    # filtering on a field bob may not see is refused, as in REST
    _, refused = await _gql(
        api, SOCIAL_NESTED, {"where": 'email == "ada@example.com"'}, headers=bob
    )
    assert refused["data"] == {"accounts": None}
    assert refused["errors"][0]["extensions"]["status"] == 400


async def test_a_design_whose_names_clash_in_graphql_still_serves_rest(make_api: Any) -> None:
    clash = """
charpente: 1
name: clash
api_version: 1
resources:
  posts:
    access: {read: true}
    fields: {title: string}
  post_connections:
    access: {read: true}
    fields: {note: string}
"""
    api = await make_api(clash)
    assert (await api.client.get("/v1/posts")).status_code == 200
    assert (await api.client.post("/v1/graphql", json={"query": "{ __typename }"})).status_code in (
        404,
        405,
    )


async def _trail(api: Any, record_id: str) -> tuple[list[Any], list[Any]]:
    """A record's history rows (less ids and times) and its outbox keys."""
    async with api.engine.connect() as conn:
        events = await conn.execute(
            sa.text(
                "SELECT action, version, actor, changes FROM charpente_events"
                " WHERE record_id = :id ORDER BY id"
            ).bindparams(sa.bindparam("id", type_=sa.Uuid(as_uuid=False))),
            {"id": record_id},
        )
        history = [
            (row.action, row.version, row.actor, sorted(json.loads(row.changes))) for row in events
        ]
        outbox = await conn.execute(
            sa.text("SELECT key FROM charpente_outbox WHERE subject = :id ORDER BY seq"),
            {"id": record_id},
        )
        return history, [row.key for row in outbox]


async def test_a_mutation_leaves_the_same_history_and_outbox_as_rest(make_api: Any) -> None:
    api = await make_api(template_text("social"))
    ada = await api.sign_in("ada@example.com", handle="ada")
    rest = await api.client.post("/v1/posts", json={"body": "hi"}, headers=ada)
    rest_id = rest.json()["id"]
    patched = await api.client.patch(
        f"/v1/posts/{rest_id}",
        json={"body": "hello"},
        headers={**ada, "If-Match": '"1"', "Content-Type": "application/merge-patch+json"},
    )
    assert patched.status_code == 200, patched.text
    _, made = await _gql(api, 'mutation { createPost(input: {body: "hi"}) { id } }', headers=ada)
    gql_id = made["data"]["createPost"]["id"]
    _, updated = await _gql(
        api,
        'mutation($id: ID!) { updatePost(id: $id, patch: {body: "hello"}, expectedVersion: 1)'
        " { version } }",
        {"id": gql_id},
        headers=ada,
    )
    assert updated == {"data": {"updatePost": {"version": 2}}}
    assert await _trail(api, gql_id) == await _trail(api, rest_id)
    history, outbox = await _trail(api, gql_id)
    assert [h[0] for h in history] == ["created", "updated"]
    assert outbox == ["posts.created", "posts.updated"]


STAFF = """
charpente: 1
name: staff
auth: {signup: open, roles: [member, admin]}
resources:
  notes:
    fields:
      title: string
      salary: int
    access:
      read: true
      create: auth.role == "admin"
      fields:
        salary: {read: auth.role == "admin"}
"""


async def test_introspection_shows_each_caller_only_what_it_may_ever_read(make_api: Any) -> None:
    api = await make_api(STAFF)
    admin = await api.sign_in("root@example.com", "admin")
    member = await api.sign_in("ann@example.com", "member")
    made = await api.client.post("/v1/notes", json={"title": "t", "salary": 5}, headers=admin)
    assert made.status_code == 201, made.text
    fields = '{ __type(name: "Note") { fields { name } } }'
    _, as_member = await _gql(api, fields, headers=member)
    _, as_admin = await _gql(api, fields, headers=admin)
    assert "salary" not in {f["name"] for f in as_member["data"]["__type"]["fields"]}
    assert "salary" in {f["name"] for f in as_admin["data"]["__type"]["fields"]}
    # selecting it is then a validation error, before any SQL
    status, refused = await _gql(api, "{ notes { nodes { salary } } }", headers=member)
    assert status == 400
    assert "salary" in refused["errors"][0]["message"]
    _, read = await _gql(api, "{ notes { nodes { title salary } } }", headers=admin)
    assert read["data"]["notes"]["nodes"] == [{"title": "t", "salary": 5}]
    # the document the admin's schema validated is not valid for the member's
    status, _ = await _gql(api, "{ notes { nodes { title salary } } }", headers=member)
    assert status == 400
    sdl = await api.client.get("/v1/graphql/schema.graphql", headers=member)
    assert "salary: Int" not in sdl.text.split("input NoteInput")[0]


async def test_introspection_can_be_switched_off_in_the_design(make_api: Any) -> None:
    quiet = """
charpente: 1
name: quiet
graphql: {introspection: false}
resources:
  notes:
    fields: {body: text}
    access: {read: true}
"""
    api = await make_api(quiet)
    status, body = await _gql(api, "{ __schema { types { name } } }")
    assert status == 400
    assert "introspection" in body["errors"][0]["message"].lower()
    assert (await _gql(api, "{ __typename }"))[1] == {"data": {"__typename": "Query"}}


def test_a_graphql_section_accepts_only_introspection() -> None:
    bad = (
        "charpente: 1\nname: x\ngraphql: {introspection: maybe}\n"
        "resources: {a: {fields: {b: text}}}\n"
    )
    with pytest.raises(DesignError, match="introspection"):
        load_design_text(bad)


async def test_variables_are_coerced_as_the_spec_says(api: Any) -> None:
    await _seed(api)
    query = 'query($n: Int!) { posts(first: $n, orderBy: "score") { nodes { score } } }'
    status, body = await _gql(api, query, {"n": "two"})
    assert status == 400
    assert "$n" in body["errors"][0]["message"]
    status, body = await _gql(api, query, {})
    assert status == 400
    status, body = await _gql(api, query, {"n": 1})
    assert body == {"data": {"posts": {"nodes": [{"score": 0}]}}}
    # a bad page size is REST's 422, on the field
    _, body = await _gql(api, query, {"n": 0})
    assert body["data"] == {"posts": None}
    assert body["errors"][0]["extensions"]["status"] == 422


async def test_each_root_field_is_charged_to_its_rest_routes_limits(make_api: Any) -> None:
    limited = """
charpente: 1
name: limited
resources:
  notes:
    fields: {body: text}
    access: {read: true, create: true}
    limits: {list: 2/minute per route}
"""
    api = await make_api(limited, limiter=MemoryLimiter())
    assert (await api.client.get("/v1/notes")).status_code == 200  # REST's bucket, shared
    _, body = await _gql(api, "{ a: notes { totalCount } b: notes { totalCount } }")
    assert body["data"] == {"a": {"totalCount": 0}, "b": None}
    assert body["errors"][0]["path"] == ["b"]
    assert body["errors"][0]["extensions"]["code"] == "RATE_LIMITED"
    assert body["errors"][0]["extensions"]["status"] == 429
    assert (await api.client.get("/v1/notes")).status_code == 429


async def test_connections_page_as_rest_does_for_every_filter_sort_and_size(api: Any) -> None:
    seeded = await _seed(api)
    author = seeded["ada"]["id"]
    filters = [None, "score >= 1", f'author == "{author}"', 'title in ["p0", "p2"]']
    sorts = [None, "-score", "title,-created_at"]
    query = """query($w: String, $o: String, $n: Int, $a: String) {
        posts(where: $w, orderBy: $o, first: $n, after: $a) {
          totalCount nodes { id title } pageInfo { hasNextPage endCursor } } }"""
    for where in filters:
        for sort in sorts:
            for size in (1, 2, 5):
                params = {"limit": str(size), "count": "exact"}
                variables: dict[str, Any] = {"n": size, "w": where, "o": sort}
                if where is not None:
                    params["filter"] = where
                if sort is not None:
                    params["sort"] = sort
                while True:
                    rest = (await api.client.get("/v1/posts", params=params)).json()
                    _, body = await _gql(api, query, variables)
                    page = body["data"]["posts"]
                    assert [n["id"] for n in page["nodes"]] == [r["id"] for r in rest["data"]]
                    assert page["totalCount"] == rest["page"]["total"]
                    cursor = rest["page"]["next_cursor"]
                    assert page["pageInfo"]["endCursor"] == cursor
                    if cursor is None:
                        break
                    params["cursor"] = variables["a"] = cursor
