"""The curl sessions of the documentation, run in order against a real app, answers checked.

Each page runs on the social template until a ```yaml api block names another design;
every app starts with an admin account (admin@example.com, password $ADMIN_PASSWORD), as
an operator would make one with `charpente accounts create`. Rate limits are on, with the
in-process limiter. A design with login providers gets the OAuth routes, with its client
ids and secrets in the environment, and `$CODE` is a one-time code such as a finished
login hands back. Like curl, the client keeps no cookies between commands.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
from examples import BASE_URL, DOCS, Request, Step, run_steps, session

from charpente.http.app import build_app
from charpente.http.oauth import oauth_routes
from charpente.runtime.oauth import OAuthClient
from charpente.runtime.ratelimit import MemoryLimiter
from charpente.templates import template_text
from charpente.wiring import login_providers

ADMIN_EMAIL = "admin@example.com"
ADMIN_PASSWORD = "keys to the whole house"

# The README's tour is docs/tour.sh, run as a script by tests/e2e/test_first_hour.py.
PAGES = {
    "getting-started.md": DOCS / "getting-started.md",
    "authentication.md": DOCS / "authentication.md",
    "oauth.md": DOCS / "oauth.md",
    "access.md": DOCS / "access.md",
    "rate-limits.md": DOCS / "rate-limits.md",
    "events.md": DOCS / "events.md",
    "graphql.md": DOCS / "graphql.md",
}


def segments() -> list[tuple[str, int]]:
    """(page, index) of every run of a page's examples against one design."""
    found = []
    for page, path in PAGES.items():
        found += [(page, index) for index in range(len(runs(path)))]
    return found


def runs(path: Path) -> list[tuple[str, list[Step]]]:
    """A page's steps, cut where a ```yaml api block names another design."""
    found = session(path)
    starts = sorted({0, *found.designs})
    ends = [*starts[1:], len(found.steps)]
    social = template_text("social")
    return [
        (found.designs.get(first, social), found.steps[first:end])
        for first, end in zip(starts, ends, strict=True)
    ]


async def start(
    make_api: Any, design: str, monkeypatch: pytest.MonkeyPatch
) -> tuple[httpx.AsyncClient, dict[str, str]]:
    """A client of an app of `design`, with its admin account, and the preset variables."""
    api = await make_api(design, limiter=MemoryLimiter(), base_url=BASE_URL)
    accounts = api.design.resources["accounts"]
    profile = {"handle": "admin"} if accounts.field("handle") is not None else {}
    admin = await api.accounts.create_account(ADMIN_EMAIL, "admin", ADMIN_PASSWORD, profile)
    variables = {"ADMIN_PASSWORD": ADMIN_PASSWORD}
    if not api.design.auth.providers:
        return api.client, variables
    for provider in api.design.auth.providers:
        monkeypatch.setenv(provider.client_id_env, f"{provider.name}-docs-client")
        monkeypatch.setenv(provider.client_secret_env, f"{provider.name}-docs-secret")
    oauth = OAuthClient(login_providers(api.design))
    routes = oauth_routes(api.accounts, oauth, api.design, "/v1", None)
    app = build_app(
        api.service, api.design, accounts=api.accounts, limiter=MemoryLimiter(), extra_routes=routes
    )
    variables["CODE"] = await api.accounts.login_code(str(admin["id"]))
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    client = httpx.AsyncClient(transport=transport, base_url=BASE_URL)
    await api.client.aclose()
    api.client = client  # closed with the app at the end of the test
    return client, variables


@pytest.mark.anyio
@pytest.mark.parametrize(("page", "index"), segments(), ids=lambda v: str(v))
async def test_every_curl_example_answers_what_the_page_shows(
    make_api: Any, monkeypatch: pytest.MonkeyPatch, page: str, index: int
) -> None:
    design, steps = runs(PAGES[page])[index]
    client, variables = await start(make_api, design, monkeypatch)

    async def send(request: Request) -> Any:
        client.cookies.clear()
        return await client.request(
            request.method, request.target, headers=request.headers, content=request.body
        )

    ran = await run_steps(steps, send, variables)
    assert ran >= 2


def test_every_page_listed_has_curl_examples() -> None:
    for page, path in PAGES.items():
        assert len(session(path).steps) >= 3, page
