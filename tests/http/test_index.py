"""`GET /`: a small JSON index for programs, a redirect to /docs for browsers."""

from __future__ import annotations

from importlib.metadata import version
from typing import Any

import pytest

pytestmark = pytest.mark.anyio


async def test_the_root_answers_a_json_index_with_links_that_work(api: Any) -> None:
    answer = await api.client.get("/")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("application/json")
    index = answer.json()
    assert (index["name"], index["version"], index["api_version"]) == (
        "blog",
        version("charpente"),
        1,
    )
    links = index["links"]
    assert (links["docs"], links["openapi"], links["api"]) == ("/docs", "/openapi.json", "/v1/")
    assert links["resources"]["posts"] == "/v1/posts"
    for link in (links["docs"], links["openapi"], links["api"], *links["resources"].values()):
        followed = await api.client.get(link)
        assert followed.status_code in (200, 401, 403), link  # accounts: admins only


async def test_a_browser_is_sent_to_the_docs(api: Any) -> None:
    accept = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
    answer = await api.client.get("/", headers={"Accept": accept})
    assert answer.status_code == 303
    assert answer.headers["location"] == "/docs"
