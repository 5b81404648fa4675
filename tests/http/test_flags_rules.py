"""Feature flags in access rules, field rules and hooks, evaluated once per request for the
caller: the SQL gets a constant, never a hash per row."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from charpente.compile.policy import row_filter
from charpente.design.expr import Compare, Literal, Name
from charpente.design.model import Design
from charpente.errors import DesignError
from charpente.loader import load_design_text
from charpente.runtime.caller import ANONYMOUS, rule_auth
from charpente.runtime.flags import in_rollout
from charpente.runtime.hooks import Hooks
from charpente.wiring import check_hook_flags

DESIGN = """
charpente: 1
name: feed
auth: {roles: [member, moderator, admin]}
flags:
  reposts: {rollout: 50%, allow: [moderator]}
  beta: {default: false}
resources:
  posts:
    fields: {body: text, shared: bool, stamped: string, rank: int}
    access:
      read: flag("reposts") or shared == false
      create: true
      fields: {body: {read: flag("beta") or shared == false}}
"""

CLIENTS = [str(uuid.UUID(int=n + 1)) for n in range(200)]
INSIDE = next(c for c in CLIENTS if in_rollout(50, "reposts", c))
OUTSIDE = next(c for c in CLIENTS if not in_rollout(50, "reposts", c))

pytestmark = pytest.mark.anyio


async def _feed(make_api, hooks: Hooks | None = None):
    api = await make_api(DESIGN, hooks=hooks)
    await api.create("posts", {"body": "plain", "shared": False, "rank": 1})
    await api.create("posts", {"body": "repost", "shared": True, "rank": 2})
    return api


async def _bodies(api, **headers: str) -> list[object]:
    response = await api.client.get("/v1/posts", params={"sort": "rank"}, headers=headers)
    assert response.status_code == 200, response.text
    return [item.get("body") for item in response.json()["data"]]


async def test_an_anonymous_caller_without_a_client_id_is_outside_a_partial_rollout(make_api):
    api = await _feed(make_api)
    assert await _bodies(api) == ["plain"]


async def test_the_client_id_buckets_an_anonymous_caller(make_api):
    api = await _feed(make_api)
    assert len(await _bodies(api, **{"X-Client-ID": INSIDE})) == 2
    assert await _bodies(api, **{"X-Client-ID": OUTSIDE}) == ["plain"]


async def test_an_allowed_role_always_has_the_flag(make_api):
    api = await _feed(make_api)
    moderator = await api.sign_in("mo@example.com", "moderator")
    assert len(await _bodies(api, **moderator)) == 2


async def test_a_field_rule_hides_a_field_while_its_flag_is_off(make_api):
    api = await _feed(make_api)
    assert await _bodies(api, **{"X-Client-ID": INSIDE}) == ["plain", None]


async def test_the_flag_reaches_sql_as_a_constant_never_hashed_per_row(make_api):
    api = await _feed(make_api)
    posts, board = api.design.resources["posts"], api.service.flags
    outside = row_filter(posts, "list", rule_auth(board.with_flags(ANONYMOUS, OUTSIDE)))
    inside = row_filter(posts, "list", rule_auth(board.with_flags(ANONYMOUS, INSIDE)))
    assert outside == Compare("==", Name(("shared",)), Literal(False))  # the rule's other half
    assert inside is None  # every row
    if api.dialect == "sqlite":  # statements are recorded through SQLAlchemy's execution
        api.statements.clear()
        await _bodies(api, **{"X-Client-ID": OUTSIDE})
        await _bodies(api, **{"X-Client-ID": INSIDE})
        selects = [s.lower() for s in api.statements if "from posts" in s.lower()]
        assert not any("hash" in s or "murmur" in s or "flag" in s for s in selects)
        assert "where posts.shared = " in selects[0]
        assert "where" not in selects[-1]


async def test_hooks_read_the_callers_flags(make_api):
    hooks = Hooks()

    @hooks.before_create("posts")
    async def stamp(ctx, values):
        values["stamped"] = f"reposts={ctx.flag('reposts')} beta={ctx.flag('beta')}"
        with pytest.raises(LookupError, match="unknown flag 'nope'"):
            ctx.flag("nope")

    api = await make_api(DESIGN, hooks=hooks)
    inside = {"X-Client-ID": INSIDE}
    response = await api.client.post("/v1/posts", json={"body": "b"}, headers=inside)
    assert response.status_code == 201, response.text
    assert response.json()["stamped"] == "reposts=True beta=False"
    response = await api.client.post("/v1/posts", json={"body": "c"})
    assert response.json()["stamped"] == "reposts=False beta=False"


def _design() -> Design:
    return load_design_text(DESIGN, "feed.yaml")


def test_a_hook_reading_an_undeclared_flag_is_an_error_at_load(tmp_path: Path):
    source = "async def f(ctx, values):\n    if ctx.flag('repost'):\n        pass\n"
    (tmp_path / "hooks.py").write_text(source)
    with pytest.raises(DesignError) as info:
        check_hook_flags(_design(), "hooks.py", tmp_path)
    (problem,) = info.value.problems
    assert (problem.line, problem.column) == (2, 8)
    assert problem.message == (
        "unknown flag 'repost' in a hook: declare it under `flags`; did you mean 'reposts'?"
    )


def test_a_hook_reading_declared_flags_loads(tmp_path: Path):
    (tmp_path / "hooks.py").write_text("def f(ctx):\n    return ctx.flag('beta')\n")
    check_hook_flags(_design(), "hooks.py", tmp_path)


async def test_a_field_write_rule_follows_the_flag(make_api):
    guarded = (
        'fields: {body: {read: flag("beta") or shared == false}, rank: {write: flag("reposts")}}'
    )
    api = await make_api(
        DESIGN.replace('fields: {body: {read: flag("beta") or shared == false}}', guarded)
    )
    outside = await api.client.post(
        "/v1/posts", json={"body": "b", "rank": 3}, headers={"X-Client-ID": OUTSIDE}
    )
    assert outside.status_code == 422
    assert outside.json()["errors"][0]["field"] == "rank"
    inside = await api.client.post(
        "/v1/posts", json={"body": "b", "rank": 3}, headers={"X-Client-ID": INSIDE}
    )
    assert inside.status_code == 201, inside.text
