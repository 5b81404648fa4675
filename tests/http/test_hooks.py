"""Hooks: before-hooks that change or reject writes, after-hooks, crashes, custom routes."""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

import pytest

from charpente.runtime.hooks import HookContext, Hooks, load_hooks

EXAMPLE = Path(__file__).parent / "hooks_example.py"
DOC = Path(__file__).parents[2] / "docs" / "hooks.md"


@pytest.fixture
def example() -> Any:
    """The example module, freshly loaded (load_hooks names it after its file)."""
    hooks = load_hooks(str(EXAMPLE))
    module = sys.modules["charpente_hooks_hooks_example"]
    assert module.hooks is hooks
    return module


@pytest.fixture
async def hooked(make_api, example) -> Any:
    api = await make_api(hooks=example.hooks)
    api.ada = await api.create("users", {"handle": "ada"})
    return api


def test_the_doc_shows_the_example_module_as_it_is() -> None:
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(encoding="utf-8"), re.DOTALL)
    assert EXAMPLE.read_text(encoding="utf-8") in blocks


@pytest.mark.anyio
async def test_a_before_create_hook_changes_the_values(hooked) -> None:
    post = await hooked.create("posts", {"author": hooked.ada["id"], "title": "  so   tidy "})
    assert post["title"] == "so tidy"


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("resource", "body", "status", "slug"),
    [
        ("posts", {"title": "Buy   now"}, 422, "validation"),
        ("likes", {"post": "{own}", "user": "{ada}"}, 403, "forbidden"),
    ],
)
async def test_a_before_create_hook_rejects_and_nothing_is_written(
    hooked, resource: str, body: dict[str, Any], status: int, slug: str
) -> None:
    own = await hooked.create("posts", {"author": hooked.ada["id"], "title": "mine"})
    ids = {"{own}": own["id"], "{ada}": hooked.ada["id"]}
    body = {k: ids.get(v, v) for k, v in body.items()}
    if resource == "posts":
        body["author"] = hooked.ada["id"]
    before = await hooked.count_rows(resource)
    response = await hooked.client.post(f"/v1/{resource}", json=body)
    assert response.status_code == status, response.text
    assert response.json()["type"] == f"/problems/{slug}"
    assert await hooked.count_rows(resource) == before
    assert (await hooked.client.get(f"/v1/posts/{own['id']}")).json()["like_count"] == 0


@pytest.mark.anyio
async def test_a_before_update_hook_rejects_with_403(hooked) -> None:
    post = await hooked.create("posts", {"author": hooked.ada["id"], "title": "[locked] old"})
    response = await hooked.client.patch(f"/v1/posts/{post['id']}", json={"title": "new"})
    assert response.status_code == 403
    assert (await hooked.client.get(f"/v1/posts/{post['id']}")).json()["title"] == "[locked] old"


@pytest.mark.anyio
async def test_a_before_delete_hook_rejects_with_409(hooked) -> None:
    admin = await hooked.create("users", {"handle": "admin"})
    response = await hooked.client.delete(f"/v1/users/{admin['id']}")
    assert response.status_code == 409
    assert response.json()["detail"] == "the admin account cannot be deleted"
    assert (await hooked.client.get(f"/v1/users/{admin['id']}")).status_code == 200


@pytest.mark.anyio
async def test_an_after_create_hook_runs_with_the_stored_record(hooked, example) -> None:
    await hooked.create("users", {"handle": "grace"})
    assert example.welcomed == ["ada", "grace"]


@pytest.mark.anyio
async def test_a_custom_route_answers_beside_the_generated_ones(hooked) -> None:
    await hooked.create("posts", {"author": hooked.ada["id"], "title": "one"})
    response = await hooked.client.get("/v1/stats")
    assert response.status_code == 200
    assert response.json() == {"posts": 1}
    assert response.headers["x-request-id"]


@pytest.mark.anyio
async def test_after_hooks_run_after_commit_and_their_failure_keeps_the_write(
    make_api, caplog
) -> None:
    hooks = Hooks()
    seen: list[Any] = []

    @hooks.after_create("users")
    async def look(ctx: HookContext, record: dict[str, Any]) -> None:
        seen.append(await ctx.get("users", record["id"]))  # visible: committed already
        raise RuntimeError("mail server down")

    api = await make_api(hooks=hooks)
    response = await api.client.post("/v1/users", json={"handle": "ada"})
    assert response.status_code == 201
    assert seen[0]["id"] == response.json()["id"]
    assert await api.count_rows("users") == 1
    logged = [r for r in caplog.records if r.name == "charpente.hooks"]
    assert logged
    assert response.headers["x-request-id"] in logged[0].getMessage()


@pytest.mark.anyio
@pytest.mark.parametrize("event", ["create", "update", "delete"])
async def test_a_crashing_before_hook_is_a_500_and_nothing_is_written(
    make_api, caplog, event: str
) -> None:
    hooks = Hooks()
    register = {
        "create": hooks.before_create,
        "update": hooks.before_update,
        "delete": hooks.before_delete,
    }[event]

    @register("posts")
    def crash(*args: Any) -> None:
        raise KeyError("a bug in user code")

    api = await make_api(hooks=hooks)
    ada = await api.create("users", {"handle": "ada"})
    if event != "create":
        post_id = await _insert_post(api, ada["id"])
    if event == "create":
        response = await api.client.post("/v1/posts", json={"author": ada["id"], "title": "t"})
        assert await api.count_rows("posts") == 0
        assert await api.count_rows("users") == 1
    elif event == "update":
        response = await api.client.patch(f"/v1/posts/{post_id}", json={"title": "changed"})
        assert (await api.client.get(f"/v1/posts/{post_id}")).json()["title"] == "t"
    else:
        response = await api.client.delete(f"/v1/posts/{post_id}")
        assert (await api.client.get(f"/v1/posts/{post_id}")).status_code == 200
    assert response.status_code == 500
    problem = response.json()
    assert problem["request_id"] == response.headers["x-request-id"]
    assert "a bug in user code" not in response.text
    assert "Traceback" not in response.text
    assert any(problem["request_id"] in r.getMessage() for r in caplog.records)


async def _insert_post(api: Any, author: str) -> str:
    """A post written behind the hooks' back, straight through the service's database."""
    from charpente.compile.plan import Insert
    from charpente.runtime.ids import new_id

    now = api.service.clock.now()
    values = {
        "id": new_id(),
        "author": author,
        "editor": None,
        "title": "t",
        "score": None,
        "price": None,
        "created_at": now,
        "updated_at": now,
        "version": 1,
    }
    async with api.service.database.transaction() as tx:
        await tx.insert(Insert("posts", values))
    return str(values["id"])
