"""Custom routes declared `f(request, ctx)` get the authenticated caller, and the service
acting as that caller: a valid token reads what the rules let it read, never a 401."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
from starlette.requests import Request
from starlette.responses import JSONResponse

from charpente.runtime.hooks import Hooks, RouteContext, load_hooks

pytestmark = pytest.mark.anyio

PRIVATE = """
charpente: 1
name: notes
api_version: 1
auth: {signup: open}
resources:
  notes:
    fields:
      owner: {ref: accounts, default: auth.id, immutable: true}
      text: {type: string, required: true}
    access:
      read: owner == auth.id
      create: auth != null
"""


def routes() -> Hooks:
    hooks = Hooks()

    @hooks.route("/v1/mine", methods=["GET"])
    async def mine(request: Request, ctx: RouteContext) -> JSONResponse:
        page = await ctx.list("notes")
        return JSONResponse({"caller": ctx.caller.id, "notes": [n["text"] for n in page.data]})

    @hooks.route("/v1/write", methods=["POST"])
    def write(request: Request, ctx: RouteContext) -> JSONResponse:  # a plain def works too
        return JSONResponse({"role": ctx.caller.role, "request_id": ctx.request_id})

    @hooks.route("/v1/anonymous", methods=["GET"])
    async def anonymous(request: Request) -> JSONResponse:  # the service without a caller
        page = await request.app.state.service.list("notes")
        return JSONResponse({"notes": len(page.data)})

    return hooks


async def test_a_custom_route_reads_as_the_caller_its_token_names(make_api: Any) -> None:
    api = await make_api(PRIVATE, hooks=routes())
    ada = await api.sign_in("ada@example.com")
    grace = await api.sign_in("grace@example.com")
    made = await api.client.post("/v1/notes", json={"text": "ada's"}, headers=ada)
    assert made.status_code == 201, made.text

    mine = await api.client.get("/v1/mine", headers=ada)
    assert mine.status_code == 200, mine.text
    assert mine.json() == {"caller": api.ids["ada@example.com"], "notes": ["ada's"]}
    theirs = await api.client.get("/v1/mine", headers=grace)
    assert theirs.json() == {"caller": api.ids["grace@example.com"], "notes": []}

    nobody = await api.client.get("/v1/mine")
    assert nobody.status_code == 401  # the rules need an account, as on /v1/notes
    assert nobody.headers["content-type"].startswith("application/problem+json")

    inline = await api.client.post("/v1/write", headers={**ada, "X-Request-ID": "r-1"})
    assert inline.json() == {"role": "member", "request_id": "r-1"}

    # What the issue saw: the service used without the context acts as nobody.
    assert (await api.client.get("/v1/anonymous", headers=ada)).status_code == 401


async def test_the_documented_example_route_says_who_calls(make_api: Any) -> None:
    example = Path(__file__).parent / "hooks_example.py"
    hooks = load_hooks(str(example))
    assert sys.modules["charpente_hooks_hooks_example"].hooks is hooks
    api = await make_api(hooks=hooks)
    headers = await api.sign_in("ada@example.com", role="admin")
    answer = await api.client.get("/v1/me", headers=headers)
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"id": api.ids["ada@example.com"], "role": "admin", "posts": 0}
